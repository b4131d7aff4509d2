"""Structs in, JSON responses out."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from pixelflow.adapters.storage.protocol import ObjectStream
from pixelflow.core.models import Job
from pixelflow.core.wire import JobView


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


def job_view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        job_id=job.id,
        user_id=job.user_id,
        status=job.status,
        source_type=job.source_type,
        object_key=job.object_key,
        webhook_url=job.webhook_url,
        pipeline=job.pipeline,
        outputs=job.outputs,
        error=job.error,
        attempts=job.attempts,
        created_at=job.created_at,
        queued_at=job.queued_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        usage=job.usage,
    )
