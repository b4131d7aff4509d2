"""A real webhook receiver on loopback: an aiohttp server in the test process whose answers
are scripted per path, recording every request it gets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks import Webhook


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a slow receiver)


@dataclass(frozen=True)
class Received:
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic()

    def verifies_with(self, secret: str) -> bool:
        """Both signatures check out with ``secret``: Standard Webhooks with the reference
        package, the original scheme by recomputing the HMAC here, as a receiver would (not
        with PixelFlow's own signing code, which would only agree with itself)."""
        headers = dict(self.headers)
        whsec = secret.startswith("whsec_")
        key = base64.b64decode(secret.removeprefix("whsec_")) if whsec else secret.encode()
        try:
            Webhook(key).verify(self.body, headers)
        except Exception:
            return False
        signed = headers["x-pixelflow-timestamp"].encode() + b"." + self.body
        expected = "sha256=" + hmac.new(key, signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers["x-pixelflow-signature"], expected)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._arrived = asyncio.Condition()

    def script(self, path: str, *replies: Reply) -> str:
        """Answer requests to ``path`` with ``replies`` in turn (200 once they run out);
        the full URL."""
        self._scripts[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int, within: float = 30) -> list[Received]:
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.received(path)) >= count), within
            )
        return self.received(path)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        received = Received(
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
        script = self._scripts.get(request.path, [])
        reply = script.pop(0) if script else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=dict(reply.headers), text="ok")
