"""Capped exponential backoff with jitter, shared by job retries and dependency reconnects."""

from __future__ import annotations

import random


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: uniform in [min(base/2, ceiling), ceiling] where
    ceiling = min(cap, base·2^(n-1)). Not "full jitter" (that draws from [0, ceiling]): the
    floor keeps a retry from coming back at once."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(min(base / 2, ceiling), ceiling)
