"""Injectable time and id sources, so tests can pin them."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """A 26-character, URL-safe, lexicographically time-ordered id."""
    millis = int(utc_now().timestamp() * 1000)
    return f"{millis:012x}{secrets.token_hex(7)}"
