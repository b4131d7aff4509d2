"""Usage report time ranges: RFC 3339 bounds, calendar-month defaults, all in UTC."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from pixelflow.core.errors import InvalidInput

# At most this many rows in a ``group=day`` report (a leap year and then some).
MAX_REPORT_DAYS = 366

# RFC 3339 date-time (with its mandatory offset), or a full-date meaning 00:00 UTC that day.
_INSTANT = re.compile(
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2}))?$"
)


def invalid_range(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_time_range")


def parse_instant(name: str, raw: str) -> datetime:
    """``raw`` as an aware UTC datetime; ``invalid_time_range`` naming ``name`` otherwise."""
    text = raw.strip()
    if _INSTANT.fullmatch(text) is None:
        raise invalid_range(
            f"{name} must be an RFC 3339 time such as 2026-03-01T00:00:00Z (or a date, "
            f"read as 00:00 UTC); got {raw[:64]!r}"
        )
    # Python keeps microseconds: extra fraction digits are dropped, not rounded.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.upper())
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:  # a date alone
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # 25:00, Feb 30, or year 1 moved before year 1
        raise invalid_range(f"{name} is not a valid time: {raw[:64]!r}") from None


def month_start(day: date) -> datetime:
    return datetime.combine(day.replace(day=1), time(), tzinfo=UTC)


def next_month_start(day: date) -> datetime:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return datetime.combine(following, time(), tzinfo=UTC)


def usage_window(
    start: datetime | None, end: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """The ``[start, end)`` a report covers. Without bounds: the current UTC calendar month.
    Without ``end``: up to the end of the current month (usage "since"). Without ``start``: from
    the beginning of the calendar month in which the range ends."""
    try:
        if end is None:
            end = next_month_start(now.astimezone(UTC).date())
        if start is None:
            start = month_start((end - timedelta(microseconds=1)).astimezone(UTC).date())
    except (OverflowError, ValueError):
        raise invalid_range("the time range is out of bounds") from None
    if start >= end:
        raise invalid_range("from must be earlier than to")
    return start, end


def report_days(start: datetime, end: datetime) -> list[date]:
    """Every UTC day the range ``[start, end)`` touches, for a ``group=day`` report."""
    first = start.astimezone(UTC).date()
    last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    count = (last - first).days + 1
    if count > MAX_REPORT_DAYS:
        raise invalid_range(f"group=day covers at most {MAX_REPORT_DAYS} days; got {count}")
    return [first + timedelta(days=n) for n in range(count)]
