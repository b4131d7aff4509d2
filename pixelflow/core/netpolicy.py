"""Which webhook targets are allowed: no loopback, private, link-local or metadata addresses.

Pure: callers resolve host names themselves and pass the addresses in.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pixelflow.core.errors import InvalidInput

_NOT_ALLOWED = "webhook_url_not_allowed"


def webhook_host(url: str) -> tuple[str, int]:
    """Check the URL's shape and return its (host, port) for resolution."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(
            f"webhook_url {url!r} is not a valid URL", code="invalid_webhook_url"
        ) from None
    if parts.scheme not in {"http", "https"}:
        raise InvalidInput("webhook_url must use http or https", code="invalid_webhook_url")
    if not parts.hostname:
        raise InvalidInput("webhook_url has no host", code="invalid_webhook_url")
    if parts.username or parts.password:
        raise InvalidInput("webhook_url must not carry credentials", code="invalid_webhook_url")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


def check_addresses(host: str, addresses: list[str]) -> None:
    if not addresses:
        raise InvalidInput(f"webhook_url host {host!r} does not resolve", code=_NOT_ALLOWED)
    for address in addresses:
        if not is_public_address(address):
            raise InvalidInput(
                f"webhook_url host {host!r} resolves to a non-public address", code=_NOT_ALLOWED
            )
