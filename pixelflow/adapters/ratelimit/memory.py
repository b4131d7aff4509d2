"""The embedded rate limiter: token buckets in a bounded in-process map.

Also home of the bucket arithmetic shared with the Redis limiter (``bucket_decision``), so both
answer with the same numbers.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pixelflow.adapters.ratelimit.protocol import RateDecision


def check_bucket(capacity: int, window: float) -> None:
    if capacity < 1:
        raise ValueError("a token bucket needs a capacity of at least 1")
    if window <= 0:
        raise ValueError("a token bucket needs a positive window")


def bucket_decision(*, allowed: bool, tokens: float, capacity: int, window: float) -> RateDecision:
    """The decision once a hit has been applied; ``tokens`` is what is left in the bucket."""
    rate = capacity / window
    return RateDecision(
        allowed=allowed,
        limit=capacity,
        remaining=max(0, math.floor(tokens)),
        reset_after=max(0.0, (capacity - tokens) / rate),
        retry_after=0.0 if allowed else max(0.0, (1 - tokens) / rate),
    )


@dataclass
class _Bucket:
    tokens: float
    updated: float


class MemoryRateLimiter:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        # Least recently hit first. A forgotten bucket comes back full, so evicting the
        # stalest ones costs little accuracy.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    async def hit(self, key: str, *, capacity: int, window: float) -> RateDecision:
        check_bucket(capacity, window)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=capacity, updated=now)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(capacity, bucket.tokens + elapsed * capacity / window)
            bucket.updated = now
        allowed = bucket.tokens >= 1
        if allowed:
            bucket.tokens -= 1
        return bucket_decision(
            allowed=allowed, tokens=bucket.tokens, capacity=capacity, window=window
        )

    async def close(self) -> None:
        self._buckets.clear()
