"""Who is calling. Modes: ``none`` (local development) and ``header`` (trust a gateway's header).

``api_key`` plugs in here as a third ``Authenticator`` without touching the routes.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

ANONYMOUS = "anonymous"


class Authenticator(Protocol):
    async def user_id(self, request: Request) -> str: ...


class NoAuth:
    async def user_id(self, request: Request) -> str:
        return ANONYMOUS


class HeaderAuth:
    """Trusts the header set by an authenticating gateway; blank means anonymous (as the
    original PixelFlow did)."""

    def __init__(self, header: str) -> None:
        self.header = header

    async def user_id(self, request: Request) -> str:
        return request.headers.get(self.header, "").strip() or ANONYMOUS


def authenticator_for(mode: str, header: str) -> Authenticator:
    if mode == "header":
        return HeaderAuth(header)
    if mode == "none":
        return NoAuth()
    raise ValueError(f"unsupported auth mode {mode!r}")
