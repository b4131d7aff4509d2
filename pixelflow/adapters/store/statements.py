"""The SQL both stores run, written once with PostgreSQL-style ``$n`` placeholders.

The statements keep to what PostgreSQL and SQLite (3.35+) share: ``RETURNING``, ``ON CONFLICT``
upserts and row-value comparisons. SQLite runs them with ``$n`` rewritten to ``?n``.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from pixelflow.adapters.store.codec import (
    API_KEY_COLUMNS,
    CONSOLE_SESSION_COLUMNS,
    JOB_COLUMNS,
    JOB_WEBHOOK_COLUMNS,
    USAGE_COLUMNS,
    WEBHOOK_DELIVERY_COLUMNS,
    WEBHOOK_EVENT_COLUMNS,
    WEBHOOK_SECRET_COLUMNS,
    api_key_values,
    console_session_values,
    job_values,
    to_json,
    usage_values,
    webhook_event_values,
)
from pixelflow.adapters.store.schema import Dialect
from pixelflow.core.models import (
    ApiKey,
    ConsoleSession,
    Job,
    Transition,
    Usage,
    WebhookAttempt,
    WebhookEvent,
)
from pixelflow.core.states import TERMINAL, JobStatus, can_transition


class Statement(NamedTuple):
    sql: str
    args: tuple[object, ...] = ()


class _Args:
    """Collects arguments, handing out the placeholder for each one (after ``given``, which
    another statement's text already numbers)."""

    def __init__(self, given: tuple[object, ...] = ()) -> None:
        self._values: list[object] = list(given)

    def __call__(self, value: object) -> str:
        self._values.append(value)
        return f"${len(self._values)}"

    def insert(self, table: str, values: dict[str, object]) -> str:
        """``INSERT INTO table (columns) VALUES (placeholders)`` for ``values``, by column."""
        placeholders = ", ".join(self(value) for value in values.values())
        return f"INSERT INTO {table} ({', '.join(values)}) VALUES ({placeholders})"

    def statement(self, sql: str) -> Statement:
        return Statement(sql, tuple(self._values))


_SELECT_JOB = (
    "SELECT "
    + ", ".join(f"j.{column}" for column in JOB_COLUMNS)
    + ", "
    + ", ".join(f"u.{column} AS usage_{column}" for column in USAGE_COLUMNS)
    + ", "
    + ", ".join(f"w.{column} AS {alias}" for alias, column in JOB_WEBHOOK_COLUMNS.items())
    + " FROM jobs AS j LEFT JOIN usage_logs AS u ON u.job_id = j.id"
    # A job reaches one terminal status, so it has at most one outcome event.
    + " LEFT JOIN webhook_events AS w ON w.job_id = j.id"
)
_IDEMPOTENCY_CONFLICT = (
    " ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
)

PING = Statement("SELECT 1")


def insert_job(job: Job) -> Statement:
    """Insert ``job``; with an idempotency key, a clash inserts nothing and returns no row."""
    arg = _Args()
    values = job_values(job)
    sql = arg.insert("jobs", values)
    if job.idempotency_key is not None:
        sql += _IDEMPOTENCY_CONFLICT
    return arg.statement(sql + " RETURNING id")


def select_job(job_id: str, *, user_id: str | None = None) -> Statement:
    arg = _Args()
    sql = f"{_SELECT_JOB} WHERE j.id = {arg(job_id)}"
    if user_id is not None:
        sql += f" AND j.user_id = {arg(user_id)}"
    return arg.statement(sql)


def select_by_idempotency_key(user_id: str, key: str) -> Statement:
    arg = _Args()
    return arg.statement(
        f"{_SELECT_JOB} WHERE j.user_id = {arg(user_id)} AND j.idempotency_key = {arg(key)}"
    )


def release_idempotency_key(job_id: str, key: str) -> Statement:
    """Free an expired key for a new job (the unique index allows one holder per user)."""
    arg = _Args()
    return arg.statement(
        f"UPDATE jobs SET idempotency_key = NULL"
        f" WHERE id = {arg(job_id)} AND idempotency_key = {arg(key)} RETURNING id"
    )


def list_jobs(
    user_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    status: JobStatus | None,
) -> Statement:
    """Newest first, keyset-paginated on (created_at, id) so equal times neither repeat nor
    go missing across pages."""
    arg = _Args()
    sql = f"{_SELECT_JOB} WHERE j.user_id = {arg(user_id)}"
    if status is not None:
        sql += f" AND j.status = {arg(JobStatus(status).value)}"
    if after is not None:
        created_at, job_id = after
        sql += f" AND (j.created_at, j.id) < ({arg(created_at)}, {arg(job_id)})"
    return arg.statement(f"{sql} ORDER BY j.created_at DESC, j.id DESC LIMIT {arg(limit)}")


def check_transition(change: Transition) -> None:
    if not change.expected:
        raise ValueError("a transition needs at least one expected status")
    refused = sorted(s.value for s in change.expected if not can_transition(s, change.target))
    if refused:
        raise ValueError(f"cannot transition from {', '.join(refused)} to {change.target.value}")


# What ``transition`` returns: the same columns, under the same names, as ``select_job``'s join,
# with the usage and outcome-event columns read by correlated subqueries (``RETURNING`` may name
# only the updated table in both dialects).
_RETURNING_JOB = ", ".join(
    [f"jobs.{column}" for column in JOB_COLUMNS]
    + [
        f"(SELECT u.{column} FROM usage_logs AS u WHERE u.job_id = jobs.id) AS usage_{column}"
        for column in USAGE_COLUMNS
    ]
    + [
        f"(SELECT w.{column} FROM webhook_events AS w WHERE w.job_id = jobs.id LIMIT 1) AS {alias}"
        for alias, column in JOB_WEBHOOK_COLUMNS.items()
    ]
)


def transition(change: Transition, *, only_without_webhook: bool = False) -> Statement:
    """A compare-and-set on status (and attempt): returns the whole job as ``select_job`` reads
    it, only if it matched. One statement, so a change with nothing else to write needs no
    explicit transaction. ``only_without_webhook`` also requires a job without a webhook."""
    check_transition(change)
    arg = _Args()
    target = change.target
    at = arg(change.at)
    sets = [f"status = {arg(target.value)}", f"updated_at = {at}"]
    if target is JobStatus.QUEUED:
        sets.append(f"queued_at = {at}")
    if target is JobStatus.PROCESSING:
        sets += [f"started_at = {at}", f"lease_expires_at = {arg(change.lease_expires_at)}"]
    else:
        # A lease belongs to a processing attempt; leaving processing ends it.
        sets.append("lease_expires_at = NULL")
    if target in TERMINAL:
        sets.append(f"finished_at = {at}")
    # Backoff only means something while queued; any other move clears it.
    sets.append(f"run_after = {arg(change.run_after)}")
    if change.begin_attempt:
        sets.append("attempts = attempts + 1")
    if change.source_bytes is not None:
        sets.append(f"source_bytes = {arg(change.source_bytes)}")
    if change.source_etag is not None:
        sets.append(f"source_etag = {arg(change.source_etag)}")
    if change.outputs is not None:
        sets.append(f"outputs = {arg(to_json(change.outputs))}")
    if change.error is not None:
        sets.append(f"error = {arg(to_json(change.error))}")
    elif target is JobStatus.SUCCEEDED:
        # A retried job that finally succeeds no longer shows its last transient error.
        sets.append("error = NULL")

    expected = ", ".join(arg(s.value) for s in sorted(change.expected))
    sql = f"UPDATE jobs SET {', '.join(sets)} WHERE id = {arg(change.job_id)}"
    sql += f" AND status IN ({expected})"
    if change.attempt is not None:
        sql += f" AND attempts = {arg(change.attempt)}"
    if only_without_webhook:
        sql += " AND webhook_url IS NULL"
    return arg.statement(f"{sql} RETURNING {_RETURNING_JOB}")


def transition_recording_usage(change: Transition, *, only_without_webhook: bool) -> Statement:
    """PostgreSQL only (a data-modifying WITH): ``transition`` and the upsert of the job's
    usage row (``change.usage``), as one statement, so as atomic as a transaction around the two
    and one round trip instead of four (BEGIN, the two, COMMIT). An outcome that records a
    webhook event needs the event in the same transaction: ``only_without_webhook`` leaves such
    jobs alone. Returns what ``transition`` returns, with the usage columns as they were before;
    no row if nothing was changed."""
    if change.usage is None:
        raise ValueError("a transition recording usage needs the usage")
    update = transition(change, only_without_webhook=only_without_webhook)
    arg = _Args(update.args)
    given = [arg(value) for value in (*usage_values(change.usage).values(), change.at)]
    return arg.statement(
        f"WITH changed AS ({update.sql}),"
        f" recorded AS (INSERT INTO usage_logs ({', '.join(_USAGE_ROW_COLUMNS)})"
        f" SELECT changed.id, changed.user_id, {', '.join(given)} FROM changed"
        f"{_ON_USAGE_CONFLICT})"
        " SELECT * FROM changed"
    )


# A usage row's columns, in the order both writers of it give them; a second write for the
# same job (a retry that recorded usage, then the success) replaces the first.
_USAGE_ROW_COLUMNS = ("job_id", "user_id", *USAGE_COLUMNS, "created_at")
_ON_USAGE_CONFLICT = " ON CONFLICT (job_id) DO UPDATE SET " + ", ".join(
    f"{column} = excluded.{column}" for column in _USAGE_ROW_COLUMNS[1:]
)


def upsert_usage(job_id: str, user_id: str, usage: Usage, at: datetime) -> Statement:
    arg = _Args()
    values = {"job_id": job_id, "user_id": user_id, **usage_values(usage), "created_at": at}
    return arg.statement(arg.insert("usage_logs", values) + _ON_USAGE_CONFLICT)


def select_usage(job_id: str) -> Statement:
    arg = _Args()
    return arg.statement(
        f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage_logs WHERE job_id = {arg(job_id)}"
    )


def renew_lease(job_id: str, *, attempt: int, until: datetime) -> Statement:
    arg = _Args()
    return arg.statement(
        f"UPDATE jobs SET lease_expires_at = {arg(until)}"
        f" WHERE id = {arg(job_id)} AND status = 'processing' AND attempts = {arg(attempt)}"
        " RETURNING id"
    )


def jobs_in(
    status: JobStatus,
    *,
    updated_before: datetime,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> Statement:
    arg = _Args()
    # The status is inlined (it is one of the enum's fixed words) so that PostgreSQL's
    # generic plans can still use the partial index on queued jobs.
    return arg.statement(
        f"{_SELECT_JOB} WHERE j.status = '{JobStatus(status).value}'"
        f" AND j.updated_at < {arg(updated_before)}"
        f"{_after('j.updated_at', after, arg)}"
        f" ORDER BY j.updated_at, j.id LIMIT {arg(limit)}"
    )


def expired_leases(
    *, now: datetime, limit: int, after: tuple[datetime, str] | None = None
) -> Statement:
    arg = _Args()
    return arg.statement(
        f"{_SELECT_JOB} WHERE j.status = 'processing' AND j.lease_expires_at < {arg(now)}"
        f"{_after('j.lease_expires_at', after, arg)}"
        f" ORDER BY j.lease_expires_at, j.id LIMIT {arg(limit)}"
    )


def _after(column: str, after: tuple[datetime, str] | None, arg: _Args) -> str:
    """Keyset paging on ``(column, id)``: rows strictly after the previous page's last one."""
    if after is None:
        return ""
    at, job_id = after
    return f" AND ({column} > {arg(at)} OR ({column} = {arg(at)} AND j.id > {arg(job_id)}))"


# -- webhooks ------------------------------------------------------------------------------------

_EVENT_COLUMNS = ", ".join(WEBHOOK_EVENT_COLUMNS)


def insert_webhook_event(event: WebhookEvent) -> Statement:
    """One event per job and outcome: a second insert for the same pair does nothing."""
    arg = _Args()
    values = webhook_event_values(event)
    return arg.statement(
        arg.insert("webhook_events", values) + " ON CONFLICT (job_id, event) DO NOTHING"
    )


def due_webhook_events(*, now: datetime, limit: int) -> Statement:
    arg = _Args()
    at = arg(now)
    return arg.statement(
        f"SELECT id, attempts FROM webhook_events WHERE state = 'pending'"
        f" AND next_attempt_at <= {at}"
        f" AND (lease_expires_at IS NULL OR lease_expires_at < {at})"
        f" ORDER BY next_attempt_at, id LIMIT {arg(limit)}"
    )


def claim_webhook_event(
    event_id: str, *, attempts: int, now: datetime, until: datetime
) -> Statement:
    """Compare-and-set: take the lease only if nobody holds it and no attempt was recorded
    since the event was read."""
    arg = _Args()
    at = arg(now)
    return arg.statement(
        f"UPDATE webhook_events SET lease_expires_at = {arg(until)}, updated_at = {at}"
        f" WHERE id = {arg(event_id)} AND state = 'pending' AND attempts = {arg(attempts)}"
        f" AND (lease_expires_at IS NULL OR lease_expires_at < {at})"
        f" RETURNING {_EVENT_COLUMNS}"
    )


def finish_webhook_attempt(attempt: WebhookAttempt) -> Statement:
    """Fenced by the attempt number: a delivery whose lease was taken over records nothing."""
    arg = _Args()
    return arg.statement(
        f"UPDATE webhook_events SET attempts = {arg(attempt.attempt)},"
        f" state = {arg(attempt.state)}, last_status = {arg(attempt.status_code)},"
        f" last_error = {arg(attempt.error)}, next_attempt_at = {arg(attempt.next_attempt_at)},"
        f" lease_expires_at = NULL, updated_at = {arg(attempt.attempted_at)}"
        f" WHERE id = {arg(attempt.event_id)} AND state = 'pending'"
        f" AND attempts = {arg(attempt.attempt - 1)} RETURNING id"
    )


def insert_webhook_delivery(attempt: WebhookAttempt) -> Statement:
    arg = _Args()
    values: dict[str, object] = {
        "event_id": attempt.event_id,
        "attempt": attempt.attempt,
        "attempted_at": attempt.attempted_at,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms,
        "next_attempt_at": attempt.next_attempt_at,
    }
    return arg.statement(arg.insert("webhook_deliveries", values))


def select_webhook_events(job_id: str) -> Statement:
    arg = _Args()
    return arg.statement(
        f"SELECT {_EVENT_COLUMNS} FROM webhook_events WHERE job_id = {arg(job_id)}"
        " ORDER BY created_at, id"
    )


def select_webhook_deliveries(event_id: str) -> Statement:
    arg = _Args()
    return arg.statement(
        f"SELECT {', '.join(WEBHOOK_DELIVERY_COLUMNS)} FROM webhook_deliveries"
        f" WHERE event_id = {arg(event_id)} ORDER BY attempt"
    )


_SECRET_COLUMNS = ", ".join(WEBHOOK_SECRET_COLUMNS)


def insert_webhook_secret(user_id: str, secret: str, at: datetime) -> Statement:
    arg = _Args()
    return arg.statement(
        f"INSERT INTO webhook_secrets (user_id, secret, created_at)"
        f" VALUES ({arg(user_id)}, {arg(secret)}, {arg(at)})"
        " ON CONFLICT (user_id) DO NOTHING"
    )


def select_webhook_secret(user_id: str) -> Statement:
    arg = _Args()
    return arg.statement(
        f"SELECT {_SECRET_COLUMNS} FROM webhook_secrets WHERE user_id = {arg(user_id)}"
    )


def rotate_webhook_secret(
    user_id: str, secret: str, *, at: datetime, previous_until: datetime
) -> Statement:
    """One statement, so two concurrent rotations each keep a consistent (new, previous)."""
    arg = _Args()
    return arg.statement(
        f"UPDATE webhook_secrets SET previous_secret = secret,"
        f" previous_expires_at = {arg(previous_until)}, secret = {arg(secret)},"
        f" created_at = {arg(at)} WHERE user_id = {arg(user_id)} RETURNING {_SECRET_COLUMNS}"
    )


# -- API keys ----------------------------------------------------------------------------------

_SELECT_API_KEY = f"SELECT {', '.join(API_KEY_COLUMNS)} FROM api_keys"


def insert_api_key(key: ApiKey) -> Statement:
    """Insert ``key``; an id already taken inserts nothing and returns no row."""
    arg = _Args()
    values = api_key_values(key)
    return arg.statement(
        arg.insert("api_keys", values) + " ON CONFLICT (id) DO NOTHING RETURNING id"
    )


def select_api_key(key_id: str, *, stand_in: ApiKey) -> Statement:
    """Exactly one row whether or not the key exists: the key's, or ``stand_in``'s values
    with ``found`` false. Finding no key then costs the same row fetch and decode as finding
    one (see ``KeyService.authenticate``)."""
    arg = _Args()
    wanted = arg(key_id)
    values = api_key_values(stand_in)
    columns = ", ".join(
        f"CASE WHEN k.id IS NULL THEN {arg(values[column])} ELSE k.{column} END AS {column}"
        for column in API_KEY_COLUMNS
        if column != "id"
    )
    return arg.statement(
        f"SELECT k.id IS NOT NULL AS found, w.wanted AS id, {columns}"
        f" FROM (SELECT {wanted} AS wanted) AS w LEFT JOIN api_keys AS k ON k.id = w.wanted"
    )


def list_api_keys(user_id: str | None) -> Statement:
    arg = _Args()
    where = "" if user_id is None else f" WHERE user_id = {arg(user_id)}"
    return arg.statement(f"{_SELECT_API_KEY}{where} ORDER BY created_at, id")


def revoke_api_key(key_id: str, at: datetime) -> Statement:
    """Revoke once: a second revocation keeps the first one's time."""
    arg = _Args()
    return arg.statement(
        f"UPDATE api_keys SET revoked_at = COALESCE(revoked_at, {arg(at)})"
        f" WHERE id = {arg(key_id)} RETURNING {', '.join(API_KEY_COLUMNS)}"
    )


def touch_api_key(key_id: str, at: datetime) -> Statement:
    """Record a use; never moves ``last_used_at`` backwards (replicas race)."""
    arg = _Args()
    when = arg(at)
    return arg.statement(
        f"UPDATE api_keys SET last_used_at = {when} WHERE id = {arg(key_id)}"
        f" AND (last_used_at IS NULL OR last_used_at < {when})"
    )


# -- console sessions --------------------------------------------------------------------------

_SESSION_COLUMNS = ", ".join(CONSOLE_SESSION_COLUMNS)


def insert_console_session(session: ConsoleSession) -> Statement:
    arg = _Args()
    return arg.statement(arg.insert("console_sessions", console_session_values(session)))


def select_console_session(id_hash: str, now: datetime) -> Statement:
    """The session unless it has expired."""
    arg = _Args()
    return arg.statement(
        f"SELECT {_SESSION_COLUMNS} FROM console_sessions"
        f" WHERE id_hash = {arg(id_hash)} AND expires_at > {arg(now)}"
    )


def delete_console_session(id_hash: str) -> Statement:
    arg = _Args()
    return arg.statement(f"DELETE FROM console_sessions WHERE id_hash = {arg(id_hash)}")


def delete_expired_console_sessions(now: datetime) -> Statement:
    arg = _Args()
    return arg.statement(f"DELETE FROM console_sessions WHERE expires_at <= {arg(now)}")


# -- deployment settings -----------------------------------------------------------------------


def record_deployment_setting(name: str, value: str, at: datetime, *, replace: bool) -> Statement:
    """Record ``value``; a value already recorded is kept unless ``replace``."""
    arg = _Args()
    on_conflict = (
        "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        if replace
        else "DO NOTHING"
    )
    return arg.statement(
        f"INSERT INTO deployment_settings (name, value, updated_at)"
        f" VALUES ({arg(name)}, {arg(value)}, {arg(at)}) ON CONFLICT (name) {on_conflict}"
    )


def select_deployment_setting(name: str) -> Statement:
    arg = _Args()
    return arg.statement(f"SELECT value FROM deployment_settings WHERE name = {arg(name)}")


# -- usage reports -----------------------------------------------------------------------------

# The UTC day of ``created_at`` as a day number since 1970-01-01: the one expression the two
# dialects cannot share (SQLite keeps times as integer microseconds since the epoch).
_DAY_NUMBER: dict[Dialect, str] = {
    "postgresql": "CAST(floor(extract(epoch FROM created_at) / 86400) AS BIGINT)",
    "sqlite": "(created_at / 86400000000)",
}
# SUM of bigint is numeric in PostgreSQL; the cast brings it back to an integer type.
_USAGE_SUMS = "count(*) AS jobs, " + ", ".join(
    f"CAST(COALESCE(SUM({column}), 0) AS BIGINT) AS {column}" for column in USAGE_COLUMNS
)


def _usage_range(arg: _Args, user_id: str, start: datetime, end: datetime) -> str:
    return (
        f" FROM usage_logs WHERE user_id = {arg(user_id)}"
        f" AND created_at >= {arg(start)} AND created_at < {arg(end)}"
    )


def usage_totals(user_id: str, *, start: datetime, end: datetime) -> Statement:
    """The user's usage rows written in ``[start, end)``, summed."""
    arg = _Args()
    return arg.statement(f"SELECT {_USAGE_SUMS}{_usage_range(arg, user_id, start, end)}")


def usage_days(user_id: str, *, start: datetime, end: datetime, dialect: Dialect) -> Statement:
    """The same sums per UTC day (``day``: days since the epoch), days with no rows omitted."""
    arg = _Args()
    day = _DAY_NUMBER[dialect]
    return arg.statement(
        f"SELECT {day} AS day, {_USAGE_SUMS}{_usage_range(arg, user_id, start, end)}"
        " GROUP BY 1 ORDER BY 1"
    )
