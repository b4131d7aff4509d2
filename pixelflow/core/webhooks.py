"""Webhook events and their retry schedule: pure rules, no I/O.

One event per job outcome; its delivery is retried with exponential backoff and jitter until a
2xx answer, a 410 (the receiver is gone for good), or the last attempt.
"""

from __future__ import annotations

import email.utils
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from msgspec import Struct

from pixelflow.core.states import JobStatus

EventType = Literal["job.completed", "job.failed", "job.canceled"]
DeliveryState = Literal["pending", "delivered", "failed"]

EVENT_FOR: dict[JobStatus, EventType] = {
    JobStatus.SUCCEEDED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELED: "job.canceled",
}

# After a rotation the previous secret keeps signing this long (SPEC §5).
ROTATION_OVERLAP = timedelta(hours=24)


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


class RetryPolicy(Struct, kw_only=True, frozen=True):
    max_attempts: int = 8
    initial_backoff: float = 1.0
    max_backoff: float = 3600.0


def backoff(attempt: int, policy: RetryPolicy, random: Callable[[], float]) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): the exponential
    delay ``initial * 2**(attempt-1)``, capped, then jittered down to between half and all
    of it (so receivers recovering from an outage are not hit by every sender at once)."""
    delay = min(policy.max_backoff, policy.initial_backoff * 2.0 ** (attempt - 1))
    return delay * (0.5 + 0.5 * random())


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


class Outcome(Struct, kw_only=True, frozen=True):
    state: DeliveryState
    retry_in: float | None  # seconds until the next attempt, when state is pending


def decide(
    attempt: int,
    status: int | None,
    retry_after: float | None,
    policy: RetryPolicy,
    random: Callable[[], float],
) -> Outcome:
    """What follows attempt number ``attempt`` that got ``status`` (None: no response)."""
    if status is not None and 200 <= status < 300:
        return Outcome(state="delivered", retry_in=None)
    if status == 410 or attempt >= policy.max_attempts:
        return Outcome(state="failed", retry_in=None)
    if retry_after is not None:
        return Outcome(state="pending", retry_in=min(retry_after, policy.max_backoff))
    return Outcome(state="pending", retry_in=backoff(attempt, policy, random))
