"""The token bucket in front of mutating routes, with the original's and the IETF headers."""

from __future__ import annotations

import math

from pixelflow.adapters.ratelimit.protocol import RateDecision, RateLimiter
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
        headers = _headers(decision)
        if not decision.allowed:
            self.metrics.rate_limit_rejections.labels(route).inc()
            retry_after = max(1, math.ceil(decision.retry_after))
            raise RateLimited(
                f"rate limit of {decision.limit} requests per {self.window:g} s exceeded; "
                f"retry in {retry_after} s",
                retry_after=retry_after,
                headers=headers,
            )
        return headers


def _headers(decision: RateDecision) -> dict[str, str]:
    remaining = str(max(0, decision.remaining))
    return {
        "X-RateLimit-Remaining": remaining,
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": remaining,
        "RateLimit-Reset": str(max(0, math.ceil(decision.reset_after))),
    }
