"""Structs in, JSON responses out."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

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
