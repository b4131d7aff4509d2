"""Jobs and transitions for the store contract tests."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from pixelflow.adapters.store.protocol import Store
from pixelflow.core.models import Job, ResizeStep, Step, Transition
from pixelflow.core.states import JobStatus

S = JobStatus
# A fixed origin keeps every time in the tests exact and readable.
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)

# One way to reach each status from `created`.
PATHS: dict[JobStatus, list[JobStatus]] = {
    S.CREATED: [],
    S.QUEUED: [S.QUEUED],
    S.PROCESSING: [S.QUEUED, S.PROCESSING],
    S.SUCCEEDED: [S.QUEUED, S.PROCESSING, S.SUCCEEDED],
    S.FAILED: [S.QUEUED, S.PROCESSING, S.FAILED],
    S.CANCELED: [S.CANCELED],
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_job(
    *,
    user_id: str = "alice",
    created_at: datetime = T0,
    pipeline: list[Step] | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Job:
    return Job(
        id=f"job-{secrets.token_hex(6)}",
        user_id=user_id,
        status=S.CREATED,
        source_type="s3_presigned",
        object_key="uploads/x/source",
        webhook_url=None,
        pipeline=pipeline or [ResizeStep(id="thumb", width=64)],
        created_at=created_at,
        updated_at=created_at,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )


def step(job: Job, target: JobStatus, when: datetime, **changes: object) -> Transition:
    """The transition a service would make to move ``job`` (as it is now) to ``target``."""
    if target is S.PROCESSING:
        changes.setdefault("begin_attempt", True)
        changes.setdefault("lease_expires_at", when + timedelta(seconds=30))
    return Transition(
        job_id=job.id,
        expected=frozenset({job.status}),
        target=target,
        at=when,
        **changes,  # type: ignore[arg-type]
    )


async def drive(store: Store, job: Job, status: JobStatus, *, start: float = 1) -> Job:
    """Move a created job along ``PATHS`` to ``status``, one second per transition."""
    for n, target in enumerate(PATHS[status]):
        moved = await store.transition(step(job, target, at(start + n)))
        assert moved is not None, f"could not move {job.status} → {target}"
        job = moved
    return job
