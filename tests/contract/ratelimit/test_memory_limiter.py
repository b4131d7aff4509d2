"""MemoryRateLimiter's arithmetic and memory bound, on a clock the test moves."""

from __future__ import annotations

import pytest

from pixelflow.adapters.ratelimit.memory import MemoryRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_bucket_arithmetic() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock)

    # Four tokens over two seconds: one every 0.5 s.
    first = [await limiter.hit("k", capacity=4, window=2) for _ in range(4)]
    assert [d.remaining for d in first] == [3, 2, 1, 0]
    assert [d.reset_after for d in first] == pytest.approx([0.5, 1.0, 1.5, 2.0])

    refused = await limiter.hit("k", capacity=4, window=2)
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.retry_after == pytest.approx(0.5)

    clock.now += 0.25
    assert (await limiter.hit("k", capacity=4, window=2)).retry_after == pytest.approx(0.25)

    clock.now += 0.25
    back = await limiter.hit("k", capacity=4, window=2)
    assert (back.allowed, back.remaining, back.retry_after) == (True, 0, 0.0)

    clock.now += 100
    full = await limiter.hit("k", capacity=4, window=2)
    assert full.remaining == 3
    assert full.reset_after == pytest.approx(0.5)


async def test_a_clock_going_backwards_refills_nothing() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock)
    await limiter.hit("k", capacity=1, window=10)

    clock.now -= 50
    assert (await limiter.hit("k", capacity=1, window=10)).allowed is False


async def test_forgets_the_least_recently_hit_keys_beyond_its_bound() -> None:
    limiter = MemoryRateLimiter(FakeClock(), max_keys=2)
    for key in ("a", "b"):
        await limiter.hit(key, capacity=1, window=60)
    await limiter.hit("a", capacity=1, window=60)  # refused, but now the most recent

    await limiter.hit("c", capacity=1, window=60)  # evicts "b"

    assert (await limiter.hit("a", capacity=1, window=60)).allowed is False
    assert (await limiter.hit("b", capacity=1, window=60)).allowed is True
