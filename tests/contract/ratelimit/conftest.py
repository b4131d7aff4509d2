"""Every RateLimiter implementation: the memory one and the Redis one against the test Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pixelflow.adapters.ratelimit.memory import MemoryRateLimiter
from pixelflow.adapters.ratelimit.protocol import RateLimiter
from pixelflow.adapters.ratelimit.redis import RedisRateLimiter
from tests.support.redis import RedisRun


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        memory = MemoryRateLimiter()
        yield memory
        await memory.close()
        return
    # Not the ``redis_run`` fixture: the memory half of the suite must not need Redis.
    run = RedisRun()
    await run.check()
    redis = await RedisRateLimiter.open(run.url, prefix=run.key_prefix, fail_open=False)
    try:
        yield redis
    finally:
        await redis.close()
        await run.cleanup()
