"""How jobs, usage and list cursors map to database values, shared by the SQL stores.

Values here are "neutral": datetimes stay timezone-aware ``datetime`` objects and JSON
columns are ``str`` (what asyncpg's default jsonb codec speaks). A store whose database has
no timestamp type (SQLite) converts with ``to_micros``/``from_micros`` at its edge.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec

from pixelflow.core.errors import InvalidInput
from pixelflow.core.models import (
    ApiKey,
    ConsoleSession,
    Job,
    JobError,
    Output,
    Step,
    Usage,
    UsageDay,
    UsageTotals,
    WebhookDelivery,
    WebhookEvent,
    WebhookSecret,
    WebhookStatus,
)
from pixelflow.core.states import JobStatus


class Row(Protocol):
    """A result row addressable by column name (asyncpg.Record, sqlite3.Row, dict)."""

    def __getitem__(self, key: str, /) -> Any: ...


JOB_COLUMNS: tuple[str, ...] = (
    "id",
    "user_id",
    "status",
    "source_type",
    "object_key",
    "webhook_url",
    "pipeline",
    "outputs",
    "error",
    "attempts",
    "source_bytes",
    "source_etag",
    "created_at",
    "updated_at",
    "queued_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "run_after",
    "idempotency_key",
    "request_hash",
    "traceparent",
)
USAGE_COLUMNS: tuple[str, ...] = (
    "pixels_processed",
    "bytes_in",
    "bytes_out",
    "bytes_saved",
    "compute_time_ms",
)
API_KEY_COLUMNS: tuple[str, ...] = (
    "id",
    "user_id",
    "name",
    "key_hash",
    "created_at",
    "last_used_at",
    "revoked_at",
)
USAGE_TOTAL_COLUMNS: tuple[str, ...] = ("jobs", *USAGE_COLUMNS)
CONSOLE_SESSION_COLUMNS: tuple[str, ...] = (
    "id_hash",
    "csrf_token",
    "user_id",
    "key_id",
    "created_at",
    "expires_at",
)
TIME_COLUMNS: frozenset[str] = frozenset(
    {
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "updated_at",
        "queued_at",
        "started_at",
        "finished_at",
        "lease_expires_at",
        "run_after",
        "next_attempt_at",
        "attempted_at",
        "previous_expires_at",
        "webhook_next_attempt_at",
    }
)
WEBHOOK_EVENT_COLUMNS: tuple[str, ...] = (
    "id",
    "job_id",
    "user_id",
    "event",
    "url",
    "payload",
    "state",
    "attempts",
    "last_status",
    "last_error",
    "next_attempt_at",
    "lease_expires_at",
    "created_at",
    "updated_at",
)
WEBHOOK_DELIVERY_COLUMNS: tuple[str, ...] = (
    "event_id",
    "attempt",
    "attempted_at",
    "status_code",
    "error",
    "duration_ms",
    "next_attempt_at",
)
WEBHOOK_SECRET_COLUMNS: tuple[str, ...] = (
    "user_id",
    "secret",
    "created_at",
    "previous_secret",
    "previous_expires_at",
)
# The job's outcome event, joined onto every job row under these names.
JOB_WEBHOOK_COLUMNS: dict[str, str] = {
    "webhook_event_id": "id",
    "webhook_event": "event",
    "webhook_state": "state",
    "webhook_attempts": "attempts",
    "webhook_last_status": "last_status",
    "webhook_next_attempt_at": "next_attempt_at",
}

_pipeline = msgspec.json.Decoder(list[Step])
_outputs = msgspec.json.Decoder(list[Output])
_error = msgspec.json.Decoder(JobError)
_cursor = msgspec.json.Decoder(tuple[int, str])
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_json(value: object) -> str:
    return msgspec.json.encode(value).decode()


def to_micros(value: datetime) -> int:
    """Exact integer microseconds since the epoch; refuses naive datetimes."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: the store only takes timezone-aware times")
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def job_values(job: Job) -> dict[str, object]:
    """The job's column values, in ``JOB_COLUMNS`` order (usage lives in its own table)."""
    values = {column: getattr(job, column) for column in JOB_COLUMNS}
    values["status"] = job.status.value
    values["pipeline"] = to_json(job.pipeline)
    values["outputs"] = to_json(job.outputs)
    values["error"] = None if job.error is None else to_json(job.error)
    return values


def usage_values(usage: Usage) -> dict[str, object]:
    return {column: getattr(usage, column) for column in USAGE_COLUMNS}


def job_from_row(row: Row) -> Job:
    """A job from a row of ``jobs`` joined with its ``usage_``-prefixed usage columns."""
    fields = {column: row[column] for column in JOB_COLUMNS}
    fields["status"] = JobStatus(row["status"])
    fields["pipeline"] = _pipeline.decode(row["pipeline"])
    fields["outputs"] = _outputs.decode(row["outputs"])
    error = row["error"]
    fields["error"] = None if error is None else _error.decode(error)
    return Job(
        **fields, usage=usage_from_row(row, prefix="usage_"), webhook=webhook_status_from_row(row)
    )


def webhook_status_from_row(row: Row) -> WebhookStatus | None:
    if row["webhook_event_id"] is None:
        return None
    return WebhookStatus(
        event=row["webhook_event"],
        event_id=row["webhook_event_id"],
        state=row["webhook_state"],
        attempts=row["webhook_attempts"],
        last_status=row["webhook_last_status"],
        next_attempt_at=row["webhook_next_attempt_at"],
    )


def webhook_event_values(event: WebhookEvent) -> dict[str, object]:
    values = {column: getattr(event, column) for column in WEBHOOK_EVENT_COLUMNS}
    values["payload"] = event.payload.decode()
    return values


def webhook_event_from_row(row: Row) -> WebhookEvent:
    fields = {column: row[column] for column in WEBHOOK_EVENT_COLUMNS}
    fields["payload"] = str(row["payload"]).encode()
    return WebhookEvent(**fields)


def webhook_delivery_from_row(row: Row) -> WebhookDelivery:
    return WebhookDelivery(**{column: row[column] for column in WEBHOOK_DELIVERY_COLUMNS})


def webhook_secret_from_row(row: Row) -> WebhookSecret:
    return WebhookSecret(**{column: row[column] for column in WEBHOOK_SECRET_COLUMNS})


def usage_from_row(row: Row, *, prefix: str = "") -> Usage | None:
    if row[prefix + USAGE_COLUMNS[0]] is None:
        return None
    return Usage(**{column: row[prefix + column] for column in USAGE_COLUMNS})


def api_key_values(key: ApiKey) -> dict[str, object]:
    return {column: getattr(key, column) for column in API_KEY_COLUMNS}


def api_key_from_row(row: Row) -> ApiKey:
    return ApiKey(**{column: row[column] for column in API_KEY_COLUMNS})


def console_session_values(session: ConsoleSession) -> dict[str, object]:
    return {column: getattr(session, column) for column in CONSOLE_SESSION_COLUMNS}


def console_session_from_row(row: Row) -> ConsoleSession:
    return ConsoleSession(**{column: row[column] for column in CONSOLE_SESSION_COLUMNS})


def usage_totals_from_row(row: Row) -> UsageTotals:
    return UsageTotals(**_sums(row))


def usage_day_from_row(row: Row) -> UsageDay:
    """A row of sums per ``day``, the number of days since 1970-01-01."""
    return UsageDay(date=_EPOCH.date() + timedelta(days=int(row["day"])), **_sums(row))


def _sums(row: Row) -> dict[str, int]:
    # int(): SQLite's SUM and PostgreSQL's bigint casts both give integers; be exact anyway.
    return {column: int(row[column]) for column in USAGE_TOTAL_COLUMNS}


def encode_cursor(job: Job) -> str:
    """An opaque position after ``job`` in newest-first order: base64url of (µs, id)."""
    raw = msgspec.json.encode((to_micros(job.created_at), job.id))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        micros, job_id = _cursor.decode(raw)
        return from_micros(micros), job_id
    except (binascii.Error, ValueError, OverflowError, msgspec.ValidationError) as exc:
        # msgspec.DecodeError is a ValueError; so is a non-ASCII cursor.
        raise InvalidInput("cursor is not valid", code="invalid_cursor") from exc
