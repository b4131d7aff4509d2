"""Structs in, JSON responses out."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from pixelflow.adapters.storage.protocol import ObjectStream
from pixelflow.core.wire import job_view

__all__ = ["job_view", "json_response", "stream_response"]

# The headers of every web page (the console and /docs). Only this origin: no CDN, no inline
# script or style (a page that tried would be refused by the browser, which the browser tests
# check). ``data:`` images are Swagger UI's icons.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def json_response(
    content: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        msgspec.json.encode(content),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class _ObjectStreamResponse(StreamingResponse):
    """Streams an open object and closes it however the response ends: sent, failed, or the
    client gone (Starlette's own ``background`` task would be skipped on a disconnect)."""

    def __init__(self, stream: ObjectStream, *, media_type: str) -> None:
        super().__init__(
            stream, media_type=media_type, headers={"Content-Length": str(stream.size)}
        )
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stream.aclose()


def stream_response(stream: ObjectStream, *, media_type: str) -> Response:
    return _ObjectStreamResponse(stream, media_type=media_type)
