"""The pure half of the SQL stores: column lists, cursors and time conversion."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import pytest

from pixelflow.adapters.store.codec import (
    API_KEY_COLUMNS,
    CONSOLE_SESSION_COLUMNS,
    JOB_COLUMNS,
    TIME_COLUMNS,
    USAGE_COLUMNS,
    decode_cursor,
    encode_cursor,
    from_micros,
    to_micros,
)
from pixelflow.core.models import (
    ApiKey,
    ConsoleSession,
    Job,
    Usage,
    WebhookDelivery,
    WebhookEvent,
    WebhookSecret,
    WebhookStatus,
)
from tests.contract.store.helpers import T0, make_job


def test_columns_cover_every_field() -> None:
    # usage and webhook are read from their own tables, joined.
    job_fields = {f.name for f in msgspec.structs.fields(Job)} - {"usage", "webhook"}
    assert set(JOB_COLUMNS) == job_fields
    assert set(USAGE_COLUMNS) == {f.name for f in msgspec.structs.fields(Usage)}
    assert set(API_KEY_COLUMNS) == {f.name for f in msgspec.structs.fields(ApiKey)}
    session_fields = {f.name for f in msgspec.structs.fields(ConsoleSession)}
    assert set(CONSOLE_SESSION_COLUMNS) == session_fields
    # Every time field of every stored struct is a time column (SQLite decodes them by name).
    times = {
        prefix + f.name
        for struct, prefix in (
            (Job, ""),
            (ApiKey, ""),
            (ConsoleSession, ""),
            (WebhookEvent, ""),
            (WebhookDelivery, ""),
            (WebhookSecret, ""),
            (WebhookStatus, "webhook_"),
        )
        for f in msgspec.structs.fields(struct)
        if "datetime" in str(f.type)
    }
    assert times == TIME_COLUMNS


def test_cursor_round_trips_to_the_microsecond() -> None:
    job = make_job(created_at=T0 + timedelta(microseconds=1))
    assert decode_cursor(encode_cursor(job)) == (job.created_at, job.id)


def test_micros_are_exact_and_refuse_naive_times() -> None:
    assert from_micros(to_micros(T0)) == T0
    assert to_micros(T0 + timedelta(microseconds=1)) - to_micros(T0) == 1
    with pytest.raises(ValueError):
        to_micros(datetime(2026, 1, 1))
