"""Which webhook targets are allowed: no loopback, private, link-local or metadata addresses.

Pure: callers resolve host names themselves (through the DNS resolver adapter) and pass the
addresses in. "Does not resolve" and "not public" give one and the same error, so a caller
cannot use webhook_url to probe which internal names exist.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pixelflow.core.errors import InvalidInput

NOT_ALLOWED = "webhook_url_not_allowed"
MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def webhook_host(url: str) -> tuple[str, int]:
    """Check the URL's shape and return its (host, port) for resolution."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(
            f"webhook_url is longer than {MAX_URL_LENGTH} characters", code="invalid_webhook_url"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("webhook_url is not a valid URL", code="invalid_webhook_url") from None
    if parts.scheme not in {"http", "https"}:
        raise InvalidInput("webhook_url must use http or https", code="invalid_webhook_url")
    if not parts.hostname:
        raise InvalidInput("webhook_url has no host", code="invalid_webhook_url")
    if parts.username or parts.password:
        raise InvalidInput("webhook_url must not carry credentials", code="invalid_webhook_url")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and would route to: IPv4-mapped, 6to4,
    Teredo (its server and its obfuscated client) and NAT64 (well-known and local prefixes)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public_address(address: str) -> bool:
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = embedded_ipv4(ip)
        if embedded:
            # A translated address is only as public as every IPv4 address it reaches.
            return all(_is_public(v4) for v4 in embedded)
    return _is_public(ip)


def _is_public(ip: IPAddress) -> bool:
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    ):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return not ip.is_site_local
    return ip not in _SHARED_ADDRESS_SPACE


def check_addresses(host: str, addresses: list[str]) -> None:
    """Refuse a host that does not resolve or reaches any non-public address, in one message."""
    if not addresses or not all(is_public_address(a) for a in addresses):
        raise InvalidInput(
            f"webhook_url host {host!r} does not resolve to a public address", code=NOT_ALLOWED
        )
