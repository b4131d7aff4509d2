"""Durable job state and usage: the source of truth."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pixelflow.core.models import Job, JobPage, Transition, Usage
from pixelflow.core.states import JobStatus


class Store(Protocol):
    async def create_job(self, job: Job) -> Job:
        """Insert a new job.

        When ``job.idempotency_key`` is set and the same user already has a job with that key
        created within the last 24 h, nothing is inserted: the existing job is returned if its
        ``request_hash`` matches, else ``Conflict(code="idempotency_key_reused")`` is raised.
        """
        ...

    async def get_job(self, job_id: str, *, user_id: str | None = None) -> Job | None:
        """The job, or None if it does not exist (or belongs to another user, when given)."""
        ...

    async def list_jobs(
        self,
        user_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        status: JobStatus | None = None,
    ) -> JobPage:
        """The user's jobs, newest first; ``next_cursor`` is opaque and None on the last page."""
        ...

    async def transition(self, change: Transition) -> Job | None:
        """Apply one conditional state change atomically; the updated job, or None if the
        job's status (or attempt counter) no longer matches. Raises ``ValueError`` if the
        transition is not in the state machine. Sets ``queued_at``/``started_at``/
        ``finished_at`` when entering those states and ``updated_at`` always; a terminal
        target clears the lease. ``change.usage`` is upserted in the same transaction."""
        ...

    async def renew_lease(self, job_id: str, *, attempt: int, until: datetime) -> bool:
        """Extend a processing attempt's lease; False if the attempt no longer owns the job."""
        ...

    async def jobs_in(
        self, status: JobStatus, *, updated_before: datetime, limit: int
    ) -> list[Job]:
        """Jobs in ``status`` last updated before the given time, oldest first (reconciler)."""
        ...

    async def expired_leases(self, *, now: datetime, limit: int) -> list[Job]:
        """``processing`` jobs whose lease ran out before ``now`` (their worker is gone)."""
        ...

    async def get_usage(self, job_id: str) -> Usage | None: ...

    async def ping(self) -> None:
        """Raise ``DatabaseUnavailable`` if the store cannot be used."""
        ...

    async def close(self) -> None: ...
