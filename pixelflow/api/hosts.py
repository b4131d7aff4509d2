"""The Host check that keeps a loopback API out of reach of DNS rebinding.

A web page on ``attacker.example`` can re-point its own name at 127.0.0.1 and then script
requests to the developer's ``serve``: the browser sends them with ``Host: attacker.example``.
Answering only the names the listener is meant to be reached by (``Settings.allowed_hosts``)
refuses them before any route runs. Starlette's ``TrustedHostMiddleware`` does the same
matching but answers in plain text; every PixelFlow error is JSON, so this is its twin.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from pixelflow.api.errors import error_response


def host_name(header: str) -> str:
    """The name part of a Host header (``[::1]:8080`` → ``::1``), lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    return any(
        name == pattern
        or (pattern.startswith("*.") and name.endswith(pattern[1:]) and name != pattern[2:])
        for pattern in allowed
    )


class HostGuardMiddleware:
    def __init__(self, app: ASGIApp, *, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = _first_host(scope)
        if not host_allowed(host_name(header), self.allowed_hosts):
            # 400, as Django's DisallowedHost and Starlette's own check answer: the request
            # names a site this server does not serve.
            response = error_response(
                400,
                "host_not_allowed",
                "this server answers only to its own host names; "
                "set PIXELFLOW_ALLOWED_HOSTS to add one",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _first_host(scope: Scope) -> str:
    """The first Host header, as ``Headers(scope=scope).get("host", "")`` reads it, without
    building a Headers object on every request."""
    for name, value in scope["headers"]:
        if name == b"host":
            return str(value.decode("latin-1"))
    return ""
