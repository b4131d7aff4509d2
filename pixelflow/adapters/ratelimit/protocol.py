"""Per-user token bucket on mutating routes."""

from __future__ import annotations

from typing import Protocol

from msgspec import Struct


class RateDecision(Struct, kw_only=True):
    allowed: bool
    limit: int
    remaining: int
    # Seconds until the bucket is full again (RateLimit-Reset).
    reset_after: float
    # Seconds until one token is available; 0 when allowed (Retry-After).
    retry_after: float


class RateLimiter(Protocol):
    async def hit(self, key: str, *, capacity: int, window: float) -> RateDecision:
        """Take one token from ``key``'s bucket (``capacity`` tokens, refilled evenly over
        ``window`` seconds)."""
        ...

    async def close(self) -> None: ...
