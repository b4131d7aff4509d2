"""The Store behaviour both SQL databases share; a subclass only supplies connections."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

import msgspec

from pixelflow.adapters.batching import Batcher
from pixelflow.adapters.store import statements as sql
from pixelflow.adapters.store.codec import (
    Row,
    api_key_from_row,
    console_session_from_row,
    decode_cursor,
    encode_cursor,
    job_from_row,
    usage_day_from_row,
    usage_from_row,
    usage_totals_from_row,
    webhook_delivery_from_row,
    webhook_event_from_row,
    webhook_secret_from_row,
)
from pixelflow.adapters.store.schema import Dialect
from pixelflow.core import webhooks
from pixelflow.core.errors import Conflict, DatabaseUnavailable
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
from pixelflow.core.wire import event_body

IDEMPOTENCY_WINDOW = timedelta(hours=24)
_STAND_IN_KEY = ApiKey(
    id="",
    user_id="",
    name="",
    key_hash="0" * 64,
    created_at=datetime(1970, 1, 1, tzinfo=UTC),
)
# A create whose key is released or taken by a concurrent request starts over; more than a
# couple of rounds means the key is being hammered, and the client should retry later.
_IDEMPOTENCY_ROUNDS = 3


class Connection(Protocol):
    """What the shared logic needs from a connection: rows keyed by column name, with
    timezone-aware datetimes and JSON as text."""

    async def fetch(self, statement: sql.Statement) -> list[Row]: ...

    async def fetchrow(self, statement: sql.Statement) -> Row | None: ...

    async def execute(self, statement: sql.Statement) -> None: ...

    async def execute_batch(self, statements: Sequence[sql.Statement]) -> None:
        """Run statements sharing one SQL text, all or none, in as few round trips as the
        driver allows."""

    async def fetch_batch(self, statements: Sequence[sql.Statement]) -> list[Row]:
        """``execute_batch``, returning every statement's rows, in order, as one list."""


@dataclass(frozen=True)
class _RowChange:
    """A transition's conditional UPDATE of one job's row, waiting for its batch."""

    job_id: str
    statement: sql.Statement


class SqlStore(abc.ABC):
    """Implements the ``Store`` Protocol on top of ``_connection`` and ``_transaction``."""

    dialect: ClassVar[Dialect]

    def __init__(self) -> None:
        # Under load, new jobs (without an idempotency key) are inserted in batches, and
        # transitions that write nothing but the job's row are made in batches, one per SQL
        # text (a batch runs one statement with many sets of arguments).
        self._new_jobs = Batcher(self._insert_jobs, outage=DatabaseUnavailable)
        self._row_changes: dict[str, Batcher[_RowChange, Row | None]] = {}

    @abc.abstractmethod
    def _connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for a single statement, committed on its own."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A connection inside a write transaction, committed when the block ends cleanly."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchrow(sql.PING)

    async def create_job(self, job: Job) -> Job:
        if job.idempotency_key is None:
            await self._new_jobs.add(job)
            return job
        for _ in range(_IDEMPOTENCY_ROUNDS):
            async with self._transaction() as conn:
                stored = await self._create_idempotent(conn, job, job.idempotency_key)
            if stored is not None:
                return stored
        raise Conflict("a concurrent request is using this Idempotency-Key; retry shortly")

    async def _insert_jobs(self, jobs: Sequence[Job]) -> list[None]:
        async with self._connection() as conn:
            await conn.execute_batch([sql.insert_job(job) for job in jobs])
        return [None] * len(jobs)

    async def _change_rows(self, changes: Sequence[_RowChange]) -> list[Row | None]:
        """The batch of one SQL text's transitions: each job's row if its compare-and-set
        matched. The batcher gives each job at most one change per batch."""
        # One lock order for every batch: two batches (from two API replicas) touching the
        # same jobs queue behind each other instead of deadlocking.
        ordered = sorted(changes, key=lambda change: change.job_id)
        async with self._connection() as conn:
            rows = await conn.fetch_batch([change.statement for change in ordered])
        matched = {row["id"]: row for row in rows}
        return [matched.get(change.job_id) for change in changes]

    def _row_changes_for(self, statement: sql.Statement) -> Batcher[_RowChange, Row | None]:
        # One batcher per shape of transition: a handful (target, expected states, columns).
        batcher = self._row_changes.get(statement.sql)
        if batcher is None:
            batcher = Batcher(
                self._change_rows, outage=DatabaseUnavailable, key=lambda change: change.job_id
            )
            self._row_changes[statement.sql] = batcher
        return batcher

    async def _finish_writes(self) -> None:
        """Wait for the batched writes already taken on (before the connections close)."""
        await self._new_jobs.close()
        for batcher in list(self._row_changes.values()):
            await batcher.close()

    async def _create_idempotent(self, conn: Connection, job: Job, key: str) -> Job | None:
        """The new or the earlier job; None when a concurrent request got in the way."""
        if await conn.fetchrow(sql.insert_job(job)) is not None:
            return job
        row = await conn.fetchrow(sql.select_by_idempotency_key(job.user_id, key))
        if row is None:
            return None
        earlier = job_from_row(row)
        if earlier.created_at > job.created_at - IDEMPOTENCY_WINDOW:
            if earlier.request_hash == job.request_hash:
                return earlier
            raise Conflict(
                "this Idempotency-Key was already used with a different request",
                code="idempotency_key_reused",
            )
        # The earlier job's key has expired: take it over for the new job.
        if await conn.fetchrow(sql.release_idempotency_key(earlier.id, key)) is None:
            return None
        if await conn.fetchrow(sql.insert_job(job)) is None:
            return None
        return job

    async def get_job(self, job_id: str, *, user_id: str | None = None) -> Job | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.select_job(job_id, user_id=user_id))
        return None if row is None else job_from_row(row)

    async def list_jobs(
        self,
        user_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        status: JobStatus | None = None,
    ) -> JobPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        after = None if cursor is None else decode_cursor(cursor)
        # One row more than asked tells whether there is a next page.
        query = sql.list_jobs(user_id, limit=limit + 1, after=after, status=status)
        async with self._connection() as conn:
            rows = await conn.fetch(query)
        jobs = [job_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return JobPage(jobs=jobs, next_cursor=encode_cursor(jobs[-1]) if more else None)

    async def transition(self, change: Transition) -> Job | None:
        # Raises ValueError before touching the database.
        update = sql.transition(change)
        if change.usage is None and change.target not in webhooks.EVENT_FOR:
            # Nothing to write but the row itself: one autocommitted conditional UPDATE is as
            # atomic as a transaction around it, and saves BEGIN, a SELECT and COMMIT; under
            # load it shares its round trip with other jobs' changes of the same shape.
            batcher = self._row_changes_for(update)
            changed = await batcher.add(_RowChange(change.job_id, update))
            return None if changed is None else job_from_row(changed)
        if change.usage is not None and self.dialect == "postgresql":
            # The row and its usage in one statement (batched like the row-only changes), for a
            # job whose outcome records no event. Anything else, or a compare-and-set that lost,
            # goes through the transaction below, which decides.
            combined = sql.transition_recording_usage(
                change, only_without_webhook=change.target in webhooks.EVENT_FOR
            )
            changed = await self._row_changes_for(combined).add(_RowChange(change.job_id, combined))
            if changed is not None:
                return msgspec.structs.replace(job_from_row(changed), usage=change.usage)
        async with self._transaction() as conn:
            matched = await conn.fetchrow(update)
            if matched is None:
                return None
            job = job_from_row(matched)
            if change.usage is not None:
                await conn.execute(sql.upsert_usage(job.id, job.user_id, change.usage, change.at))
                # The upsert wrote exactly these values: no need to read them back.
                job = msgspec.structs.replace(job, usage=change.usage)
            event = _outcome_event(job, change.at)
            if event is not None:
                # The outcome and its event commit together: no event without the outcome,
                # no outcome without its event.
                await conn.execute(sql.insert_webhook_event(event))
                row = await conn.fetchrow(sql.select_job(change.job_id))
                assert row is not None  # the row was just updated in this transaction
                job = job_from_row(row)
        return job

    async def renew_lease(self, job_id: str, *, attempt: int, until: datetime) -> bool:
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.renew_lease(job_id, attempt=attempt, until=until))
        return row is not None

    async def jobs_in(
        self,
        status: JobStatus,
        *,
        updated_before: datetime,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[Job]:
        statement = sql.jobs_in(status, updated_before=updated_before, limit=limit, after=after)
        async with self._connection() as conn:
            rows = await conn.fetch(statement)
        return [job_from_row(row) for row in rows]

    async def expired_leases(
        self, *, now: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[Job]:
        async with self._connection() as conn:
            rows = await conn.fetch(sql.expired_leases(now=now, limit=limit, after=after))
        return [job_from_row(row) for row in rows]

    async def get_usage(self, job_id: str) -> Usage | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.select_usage(job_id))
        return None if row is None else usage_from_row(row)

    # -- webhooks ------------------------------------------------------------------------------

    async def claim_webhook_events(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookEvent]:
        async with self._connection() as conn:
            due = await conn.fetch(sql.due_webhook_events(now=now, limit=limit))
        claimed: list[WebhookEvent] = []
        for candidate in due:
            claim = sql.claim_webhook_event(
                candidate["id"], attempts=candidate["attempts"], now=now, until=lease_until
            )
            async with self._connection() as conn:
                row = await conn.fetchrow(claim)
            if row is not None:
                claimed.append(webhook_event_from_row(row))
        return claimed

    async def record_webhook_attempt(self, attempt: WebhookAttempt) -> bool:
        async with self._transaction() as conn:
            if await conn.fetchrow(sql.finish_webhook_attempt(attempt)) is None:
                return False
            await conn.execute(sql.insert_webhook_delivery(attempt))
        return True

    async def webhook_events(self, job_id: str) -> list[WebhookEvent]:
        async with self._connection() as conn:
            rows = await conn.fetch(sql.select_webhook_events(job_id))
        return [webhook_event_from_row(row) for row in rows]

    async def webhook_deliveries(self, event_id: str) -> list[WebhookDelivery]:
        async with self._connection() as conn:
            rows = await conn.fetch(sql.select_webhook_deliveries(event_id))
        return [webhook_delivery_from_row(row) for row in rows]

    async def webhook_secret(
        self, user_id: str, *, new_secret: str, now: datetime
    ) -> WebhookSecret:
        async with self._transaction() as conn:
            await conn.execute(sql.insert_webhook_secret(user_id, new_secret, now))
            row = await conn.fetchrow(sql.select_webhook_secret(user_id))
        assert row is not None, "the secret was inserted or already there"
        return webhook_secret_from_row(row)

    async def rotate_webhook_secret(
        self, user_id: str, *, new_secret: str, now: datetime, overlap: timedelta
    ) -> WebhookSecret:
        rotate = sql.rotate_webhook_secret(
            user_id, new_secret, at=now, previous_until=now + overlap
        )
        async with self._transaction() as conn:
            row = await conn.fetchrow(rotate)
            if row is None:  # no secret yet: the new one is the first
                await conn.execute(sql.insert_webhook_secret(user_id, new_secret, now))
                row = await conn.fetchrow(sql.select_webhook_secret(user_id))
        assert row is not None
        return webhook_secret_from_row(row)

    # -- API keys ----------------------------------------------------------------------------

    async def create_api_key(self, key: ApiKey) -> bool:
        async with self._connection() as conn:
            return await conn.fetchrow(sql.insert_api_key(key)) is not None

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        # A missing key is read and decoded as a stand-in, so it costs what a found key costs.
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.select_api_key(key_id, stand_in=_STAND_IN_KEY))
        assert row is not None, "the lookup always returns one row"
        key = api_key_from_row(row)
        return key if row["found"] else None

    async def list_api_keys(self, *, user_id: str | None = None) -> list[ApiKey]:
        async with self._connection() as conn:
            rows = await conn.fetch(sql.list_api_keys(user_id))
        return [api_key_from_row(row) for row in rows]

    async def revoke_api_key(self, key_id: str, *, at: datetime) -> ApiKey | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.revoke_api_key(key_id, at))
        return None if row is None else api_key_from_row(row)

    async def create_console_session(self, session: ConsoleSession) -> None:
        async with self._connection() as conn:
            await conn.execute(sql.delete_expired_console_sessions(session.created_at))
            await conn.execute(sql.insert_console_session(session))

    async def get_console_session(self, id_hash: str, *, now: datetime) -> ConsoleSession | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.select_console_session(id_hash, now))
        return None if row is None else console_session_from_row(row)

    async def delete_console_session(self, id_hash: str) -> None:
        async with self._connection() as conn:
            await conn.execute(sql.delete_console_session(id_hash))

    async def touch_api_key(self, key_id: str, *, at: datetime) -> None:
        async with self._connection() as conn:
            await conn.execute(sql.touch_api_key(key_id, at))

    # -- deployment settings -----------------------------------------------------------------

    async def claim_deployment_setting(self, name: str, value: str, *, now: datetime) -> str:
        async with self._transaction() as conn:
            await conn.execute(sql.record_deployment_setting(name, value, now, replace=False))
            row = await conn.fetchrow(sql.select_deployment_setting(name))
        assert row is not None, "the value was inserted or already there"
        return str(row["value"])

    async def deployment_setting(self, name: str) -> str | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.select_deployment_setting(name))
        return None if row is None else str(row["value"])

    async def set_deployment_setting(self, name: str, value: str, *, now: datetime) -> None:
        async with self._connection() as conn:
            await conn.execute(sql.record_deployment_setting(name, value, now, replace=True))

    # -- usage reports -----------------------------------------------------------------------

    async def usage_totals(self, user_id: str, *, start: datetime, end: datetime) -> UsageTotals:
        async with self._connection() as conn:
            row = await conn.fetchrow(sql.usage_totals(user_id, start=start, end=end))
        assert row is not None, "an aggregate without GROUP BY always returns a row"
        return usage_totals_from_row(row)

    async def usage_days(self, user_id: str, *, start: datetime, end: datetime) -> list[UsageDay]:
        statement = sql.usage_days(user_id, start=start, end=end, dialect=self.dialect)
        async with self._connection() as conn:
            rows = await conn.fetch(statement)
        return [usage_day_from_row(row) for row in rows]


def _outcome_event(job: Job, at: datetime) -> WebhookEvent | None:
    """The event a job's terminal transition records, if the job has a webhook."""
    event = webhooks.EVENT_FOR.get(job.status)
    if event is None or job.webhook_url is None:
        return None
    event_id = webhooks.new_event_id()
    payload = msgspec.json.encode(event_body(job, event=event, event_id=event_id))
    return WebhookEvent(
        id=event_id,
        job_id=job.id,
        user_id=job.user_id,
        event=event,
        url=job.webhook_url,
        payload=payload,
        state="pending",
        attempts=0,
        created_at=at,
        updated_at=at,
        next_attempt_at=at,
    )
