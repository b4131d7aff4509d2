"""API key shapes, user ids and usage time ranges: the pure rules behind identity and usage."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from pixelflow.core.errors import InvalidInput
from pixelflow.core.identity import (
    hash_key,
    is_user_id,
    key_id_of,
    new_key,
    parse_key_ref,
    public_prefix,
)
from pixelflow.core.usage import (
    MAX_REPORT_DAYS,
    parse_instant,
    report_days,
    usage_window,
)


def test_a_new_key_is_prefixed_and_carries_256_random_bits() -> None:
    keys = [new_key() for _ in range(50)]
    for key_id, key in keys:
        assert key.startswith(public_prefix(key_id) + "_")
        secret = key.removeprefix(public_prefix(key_id) + "_")
        assert len(base64.urlsafe_b64decode(secret + "=")) == 32
        assert key_id_of(key) == key_id
    assert len({key for _, key in keys}) == len({key_id for key_id, _ in keys}) == 50


def test_only_well_formed_keys_have_an_id() -> None:
    key_id, key = new_key()
    for bad in ["", key[:-1], key + "x", key.replace("pf_", "pk_"), key.upper(), f" {key}"]:
        assert key_id_of(bad) is None, bad
    assert parse_key_ref(key_id) == parse_key_ref(public_prefix(key_id)) == key_id
    assert parse_key_ref(key) is None  # an operator never needs the full key


def test_the_hash_is_the_sha256_of_the_whole_key() -> None:
    _, key = new_key()
    assert len(hash_key(key)) == 64
    assert hash_key(key) != hash_key(key[:-1] + ("A" if key[-1] != "A" else "B"))


@pytest.mark.parametrize("value", ["alice", "user-42", "a.b_c@d:e+f", "x" * 128])
def test_user_ids_that_pass(value: str) -> None:
    assert is_user_id(value)


@pytest.mark.parametrize(
    "value", ["", " ", "x" * 129, "alice bob", "a,b", "ålice", "a/b", "a\nb", "alice\x00"]
)
def test_user_ids_that_do_not(value: str) -> None:
    assert not is_user_id(value)


# -- usage ranges ------------------------------------------------------------------------------

NOW = datetime(2026, 2, 14, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-01T00:00:00Z", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01t01:00:00+01:00", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T00:00:00.1234567Z", datetime(2026, 3, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_and_dates_parse_to_utc(raw: str, expected: datetime) -> None:
    parsed = parse_instant("from", raw)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "2026-03-01T00:00:00",
        "2026-13-01",
        "2026-02-30T00:00:00Z",
        "2026-03-01T24:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before the first representable instant
        "1700000000",
        "",
    ],
)
def test_anything_else_is_an_invalid_time_range(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_instant("from", raw)
    assert caught.value.code == "invalid_time_range"


def test_the_default_window_is_the_current_utc_month() -> None:
    assert usage_window(None, None, now=NOW) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    # Late on Dec 31st in New York it is already January in UTC.
    new_york = timezone(timedelta(hours=-5))
    late = datetime(2025, 12, 31, 20, 0, tzinfo=new_york)
    assert usage_window(None, None, now=late) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 2, 1, tzinfo=UTC),
    )


def test_one_bound_completes_the_other() -> None:
    since = datetime(2025, 11, 20, tzinfo=UTC)
    assert usage_window(since, None, now=NOW) == (since, datetime(2026, 3, 1, tzinfo=UTC))
    until = datetime(2026, 1, 1, tzinfo=UTC)  # exclusive: the month before it
    assert usage_window(None, until, now=NOW) == (datetime(2025, 12, 1, tzinfo=UTC), until)


def test_an_empty_or_backwards_window_is_refused() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for end in (start, start - timedelta(seconds=1)):
        with pytest.raises(InvalidInput) as caught:
            usage_window(start, end, now=NOW)
        assert caught.value.code == "invalid_time_range"


def test_report_days_are_every_utc_day_touched() -> None:
    start = datetime(2026, 2, 27, 12, tzinfo=UTC)
    assert report_days(start, datetime(2026, 3, 2, tzinfo=UTC)) == [
        date(2026, 2, 27),
        date(2026, 2, 28),
        date(2026, 3, 1),
    ]
    assert report_days(start, start + timedelta(seconds=1)) == [date(2026, 2, 27)]
    with pytest.raises(InvalidInput):
        report_days(start, start + timedelta(days=MAX_REPORT_DAYS + 1))
