"""A streamed output closes its object however the response ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message

from pixelflow.api.render import stream_response


class RecordingStream:
    """An ObjectStream over fixed chunks that records being closed."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.size = sum(map(len, chunks))
        self.closed = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed += 1


SCOPE = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "GET", "headers": []}


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def test_sent_in_chunks_with_its_length_then_closed() -> None:
    stream = RecordingStream(b"abc", b"def")
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await stream_response(stream, media_type="image/png")(SCOPE, _receive, send)

    assert (b"content-length", b"6") in sent[0]["headers"]
    assert [m.get("body") for m in sent[1:]] == [b"abc", b"def", b""]
    assert stream.closed == 1


async def test_closed_when_the_client_goes_away() -> None:
    stream = RecordingStream(b"abc", b"def")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("connection reset")

    with pytest.raises(ClientDisconnect):
        await stream_response(stream, media_type="image/png")(SCOPE, _receive, send)
    assert stream.closed == 1
