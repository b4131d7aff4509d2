"""Bounded, strictly typed request bodies."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.requests import Request

from pixelflow.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType


async def read_body(request: Request, *, limit: int) -> bytes:
    """The whole body (for small ones: JSON), refusing (413) past ``limit`` bytes."""
    return b"".join([chunk async for chunk in body_chunks(request, limit=limit)])


async def body_chunks(request: Request, *, limit: int) -> AsyncGenerator[bytes, None]:
    """The body as it arrives, refusing (413) as soon as it passes ``limit`` bytes: a declared
    Content-Length is checked before reading, a chunked body while reading."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidInput("Content-Length is not a number", code="bad_request") from None
        if length > limit:
            raise PayloadTooLarge(f"the body is {length} bytes; at most {limit} are allowed")
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        if chunk:
            yield chunk


async def read_json_body(request: Request, *, limit: int) -> bytes:
    """A JSON body, refused (415) unless it says so: an HTML form on any web page can POST
    ``text/plain`` or form data to a loopback ``serve`` without a CORS preflight, but never
    ``application/json``."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json (got {media_type or 'no content type'})"
        )
    return await read_body(request, limit=limit)
