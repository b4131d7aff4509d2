"""RedisRateLimiter beyond the shared contract: its keys, and what happens when Redis is down."""

from __future__ import annotations

import asyncio

import pytest

from pixelflow.adapters.ratelimit.redis import RedisRateLimiter
from pixelflow.core.errors import Unavailable
from tests.support.redis import RedisRun, closed_port_url

WAIT = 10.0


async def test_bucket_lives_under_the_prefix_and_expires_within_a_window(
    redis_run: RedisRun,
) -> None:
    limiter = await RedisRateLimiter.open(redis_run.url, prefix=redis_run.key_prefix)
    try:
        await limiter.hit("user-a", capacity=10, window=30)
    finally:
        await limiter.close()

    async with redis_run.client() as redis:
        ttl_ms = await redis.pttl(f"{redis_run.key_prefix}user-a")
        bucket = await redis.hgetall(f"{redis_run.key_prefix}user-a")  # type: ignore[misc]
    assert 0 < ttl_ms <= 30_000
    assert float(bucket[b"tokens"]) == pytest.approx(9, abs=0.01)


async def test_fails_open_and_counts_it_when_redis_is_down() -> None:
    calls: list[None] = []
    limiter = await RedisRateLimiter.open(
        closed_port_url(), fail_open=True, on_fail_open=lambda: calls.append(None)
    )
    try:
        async with asyncio.timeout(WAIT):
            decisions = [await limiter.hit("user-a", capacity=5, window=60) for _ in range(2)]
    finally:
        await limiter.close()

    assert all(d.allowed and d.remaining == 5 and d.retry_after == 0 for d in decisions)
    assert limiter.fail_open_count == 2
    assert len(calls) == 2


async def test_fails_closed_with_unavailable_when_so_configured() -> None:
    limiter = await RedisRateLimiter.open(closed_port_url(), fail_open=False)
    try:
        async with asyncio.timeout(WAIT):
            with pytest.raises(Unavailable) as raised:
                await limiter.hit("user-a", capacity=5, window=60)
    finally:
        await limiter.close()

    assert "refused" not in raised.value.message.lower()
    assert limiter.fail_open_count == 0
