"""Sending one webhook request: the delivery service's only view of HTTP."""

from __future__ import annotations

from typing import Protocol

from msgspec import Struct


class WebhookRequest(Struct, kw_only=True, frozen=True):
    url: str
    # The addresses the guard vetted: the connection goes to one of these, never to the
    # result of a second lookup (which a rebinding DNS server could answer differently).
    addresses: list[str]
    headers: dict[str, str]
    body: bytes
    timeout: float


class WebhookResponse(Struct, kw_only=True, frozen=True):
    status: int
    retry_after: str | None = None


class SendFailed(Exception):
    """No HTTP response: refused, reset, timed out, TLS failure. The message is short and
    safe to store (no receiver-controlled text)."""


class WebhookClient(Protocol):
    async def post(self, request: WebhookRequest) -> WebhookResponse:
        """POST the body; never follows a redirect (a 3xx is returned as it is). Raises
        ``SendFailed`` when no response arrives within ``request.timeout``."""
        ...

    async def aclose(self) -> None: ...
