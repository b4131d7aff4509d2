"""The production rate limiter: one token bucket per key in Redis, shared by every API process.

A single Lua script refills and takes a token atomically, reading the clock with Redis ``TIME`` so
that API hosts with skewed clocks still agree. A bucket is a hash (``tokens``, ``ts``) that expires
once it would be full again, so idle users cost nothing.

When Redis cannot be reached the limiter either lets the request through (``fail_open``, counted
in ``fail_open_count``) or raises ``Unavailable``: rate limiting should not take the API down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pixelflow.adapters.ratelimit.memory import bucket_decision, check_bucket
from pixelflow.adapters.ratelimit.protocol import RateDecision
from pixelflow.core.errors import Unavailable

logger = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV[1]: capacity; ARGV[2]: window in seconds.
# Returns {allowed (0|1), tokens left as a string} (a Lua number would be truncated to an integer).
TAKE_TOKEN = """
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = capacity
else
  local elapsed = math.max(0, now - updated)
  tokens = math.min(capacity, tokens + elapsed * capacity / window)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "pixelflow:rl:",
        fail_open: bool = True,
        on_fail_open: Callable[[], None] | None = None,
        call_timeout: float = 0.5,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._fail_open = fail_open
        self._on_fail_open = on_fail_open
        self._timeout = call_timeout
        self._take_token = redis.register_script(TAKE_TOKEN)
        self.fail_open_count = 0
        # Log the transitions only: an outage must not write one line per request.
        self._redis_down = False

    @classmethod
    async def open(
        cls,
        redis_url: str,
        *,
        prefix: str = "pixelflow:rl:",
        fail_open: bool = True,
        on_fail_open: Callable[[], None] | None = None,
        call_timeout: float = 0.5,
    ) -> RedisRateLimiter:
        """Create the client. No connection is made yet: the API may start while Redis is down."""
        redis = Redis.from_url(
            redis_url, socket_connect_timeout=call_timeout, socket_timeout=call_timeout
        )
        return cls(
            redis,
            prefix=prefix,
            fail_open=fail_open,
            on_fail_open=on_fail_open,
            call_timeout=call_timeout,
        )

    async def hit(self, key: str, *, capacity: int, window: float) -> RateDecision:
        check_bucket(capacity, window)
        try:
            async with asyncio.timeout(self._timeout):
                allowed, tokens = await self._take_token(
                    keys=[self._prefix + key], args=[capacity, window]
                )
        except (RedisError, OSError, TimeoutError) as exc:
            return self._without_redis(exc, capacity=capacity, window=window)
        if self._redis_down:
            self._redis_down = False
            logger.info("rate limiter: Redis is reachable again")
        return bucket_decision(
            allowed=bool(allowed), tokens=float(tokens), capacity=capacity, window=window
        )

    async def close(self) -> None:
        await self._redis.aclose()

    def _without_redis(self, exc: Exception, *, capacity: int, window: float) -> RateDecision:
        if not self._redis_down:
            self._redis_down = True
            logger.warning(
                "rate limiter: Redis unavailable (%s); %s",
                type(exc).__name__,
                "letting requests through" if self._fail_open else "refusing requests",
            )
        if not self._fail_open:
            raise Unavailable("the rate limiter (Redis) is unavailable") from exc
        self.fail_open_count += 1
        if self._on_fail_open is not None:
            self._on_fail_open()
        return RateDecision(
            allowed=True, limit=capacity, remaining=capacity, reset_after=0.0, retry_after=0.0
        )
