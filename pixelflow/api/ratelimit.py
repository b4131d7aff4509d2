"""The token bucket in front of mutating routes, with the original's and the IETF headers."""

from __future__ import annotations

import math

from pixelflow.adapters.ratelimit.protocol import RateLimiter
from pixelflow.core.errors import RateLimited
from pixelflow.telemetry.metrics import Metrics


class RouteLimiter:
    def __init__(
        self, limiter: RateLimiter, *, capacity: int, window: float, metrics: Metrics
    ) -> None:
        self.limiter = limiter
        self.capacity = capacity
        self.window = window
        self.metrics = metrics

    async def take(self, user_id: str, route: str) -> dict[str, str]:
        """Take a token for ``user_id``: the headers to send, or ``RateLimited`` (429)."""
        if self.capacity <= 0:
            return {}
        decision = await self.limiter.hit(
            f"user:{user_id}", capacity=self.capacity, window=self.window
        )
        if not decision.allowed:
            self.metrics.rate_limit_rejections.labels(route).inc()
            raise RateLimited(
                f"rate limit of {decision.limit} requests per {self.window:g} s exceeded; "
                f"retry in {retry_after_seconds(decision.retry_after)} s",
                limit=decision.limit,
                remaining=decision.remaining,
                reset_after=decision.reset_after,
                retry_after=decision.retry_after,
            )
        return rate_headers(decision.limit, decision.remaining, decision.reset_after)


def rate_headers(limit: int, remaining: int, reset_after: float) -> dict[str, str]:
    left = str(max(0, remaining))
    return {
        "X-RateLimit-Remaining": left,
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": left,
        "RateLimit-Reset": str(max(0, math.ceil(reset_after))),
    }


def retry_after_seconds(retry_after: float) -> int:
    """Whole seconds for ``Retry-After``, at least 1 (0 would invite an immediate retry)."""
    return max(1, math.ceil(retry_after))
