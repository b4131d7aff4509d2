"""Durable job state and usage: the source of truth."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from pixelflow.core.models import (
    ApiKey,
    ConsoleSession,
    Job,
    JobPage,
    Transition,
    Usage,
    UsageDay,
    UsageTotals,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSecret,
)
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
        self,
        status: JobStatus,
        *,
        updated_before: datetime,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[Job]:
        """Jobs in ``status`` last updated before the given time, oldest first by
        ``(updated_at, id)`` (reconciler); ``after`` = the previous page's last
        ``(updated_at, id)`` gives the next page."""
        ...

    async def expired_leases(
        self, *, now: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[Job]:
        """``processing`` jobs whose lease ran out before ``now`` (their worker is gone), by
        ``(lease_expires_at, id)``; ``after`` = the previous page's last pair."""
        ...

    async def get_usage(self, job_id: str) -> Usage | None: ...

    # -- webhooks ------------------------------------------------------------------------------

    async def claim_webhook_events(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookEvent]:
        """Pending events due by ``now`` that nobody holds, each claimed by a compare-and-set
        lease until ``lease_until`` (two callers never claim the same attempt)."""
        ...

    async def record_webhook_attempt(self, attempt: WebhookAttempt) -> bool:
        """Record one attempt (a delivery row) and the event's new state, atomically; False,
        recording nothing, if the event is no longer pending at ``attempt.attempt - 1``
        attempts (another delivery got there first). Releases the lease."""
        ...

    async def webhook_events(self, job_id: str) -> list[WebhookEvent]: ...

    async def webhook_deliveries(self, event_id: str) -> list[WebhookDelivery]:
        """Every attempt made for the event, in order."""
        ...

    async def webhook_secret(
        self, user_id: str, *, new_secret: str, now: datetime
    ) -> WebhookSecret:
        """The user's signing secret, created atomically from ``new_secret`` if they have
        none (concurrent callers all get the one that was stored)."""
        ...

    async def rotate_webhook_secret(
        self, user_id: str, *, new_secret: str, now: datetime, overlap: timedelta
    ) -> WebhookSecret:
        """Replace the user's secret; the one replaced keeps signing until ``now + overlap``."""
        ...

    async def usage_totals(self, user_id: str, *, start: datetime, end: datetime) -> UsageTotals:
        """The user's usage rows (one per succeeded job, timed by its success) written in
        ``[start, end)``, summed; ``jobs`` counts the rows."""
        ...

    async def usage_days(self, user_id: str, *, start: datetime, end: datetime) -> list[UsageDay]:
        """The same sums per UTC day, oldest first; days without rows are left out."""
        ...

    async def create_api_key(self, key: ApiKey) -> bool:
        """Insert ``key``; False (and nothing written) when its id is already taken."""
        ...

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        """The key with this lookup id, revoked or not; None if there is none."""
        ...

    async def list_api_keys(self, *, user_id: str | None = None) -> list[ApiKey]:
        """Every key (of ``user_id``, when given), oldest first."""
        ...

    async def revoke_api_key(self, key_id: str, *, at: datetime) -> ApiKey | None:
        """Mark the key revoked (a revoked key keeps its first ``revoked_at``); the key, or
        None if there is none."""
        ...

    async def create_console_session(self, session: ConsoleSession) -> None:
        """Store a new session (its id hash is fresh), deleting expired ones in passing."""
        ...

    async def get_console_session(self, id_hash: str, *, now: datetime) -> ConsoleSession | None:
        """The session with this id hash unless it has expired by ``now``."""
        ...

    async def delete_console_session(self, id_hash: str) -> None:
        """End a session; an unknown one is not an error."""
        ...

    async def touch_api_key(self, key_id: str, *, at: datetime) -> None:
        """Set ``last_used_at`` to ``at`` unless it is already later."""
        ...

    async def claim_deployment_setting(self, name: str, value: str, *, now: datetime) -> str:
        """The value recorded for the deployment-wide setting ``name``, recording ``value``
        first when there is none (concurrent callers all get the one that was stored)."""
        ...

    async def deployment_setting(self, name: str) -> str | None:
        """The value recorded for ``name``; None if none is."""
        ...

    async def set_deployment_setting(self, name: str, value: str, *, now: datetime) -> None:
        """Record ``value`` for ``name``, replacing any value recorded before."""
        ...

    async def ping(self) -> None:
        """Raise ``DatabaseUnavailable`` if the store cannot be used."""
        ...

    async def close(self) -> None: ...
