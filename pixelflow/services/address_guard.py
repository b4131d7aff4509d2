"""Where a webhook may go: the URL's shape and the addresses its host resolves to."""

from __future__ import annotations

from pixelflow.adapters.dns.protocol import Resolver
from pixelflow.core import netpolicy


class AddressGuard:
    """Vets a webhook URL's addresses, at create and again before every delivery."""

    def __init__(self, resolver: Resolver, *, allow_private: bool) -> None:
        self.resolver = resolver
        self.allow_private = allow_private

    async def check_url(self, url: str) -> None:
        """At create: the URL's shape always; its addresses unless private ones are allowed."""
        host, port = netpolicy.webhook_host(url)
        if not self.allow_private:
            netpolicy.check_addresses(host, await self.resolver.resolve(host, port))

    async def addresses(self, url: str) -> list[str]:
        """At delivery: the vetted addresses the connection must go to."""
        host, port = netpolicy.webhook_host(url)
        addresses = await self.resolver.resolve(host, port)
        if not addresses or not self.allow_private:
            # Even with private targets allowed, a name that does not resolve gets the one
            # "not allowed" error.
            netpolicy.check_addresses(host, addresses)
        return addresses
