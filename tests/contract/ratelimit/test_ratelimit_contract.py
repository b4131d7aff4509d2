"""The RateLimiter contract, run against every implementation with the real clock."""

from __future__ import annotations

import asyncio

import pytest

from pixelflow.adapters.ratelimit.protocol import RateLimiter


async def test_allows_capacity_hits_then_refuses(limiter: RateLimiter) -> None:
    decisions = [await limiter.hit("user-a", capacity=3, window=60) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert {d.limit for d in decisions} == {3}
    assert [d.retry_after for d in decisions[:3]] == [0.0, 0.0, 0.0]
    # One token comes back every 20 s; the bucket is full 20 s per missing token later.
    assert 0 < decisions[3].retry_after <= 20
    assert decisions[3].retry_after == pytest.approx(20, abs=1)
    assert [d.reset_after for d in decisions[:3]] == pytest.approx([20, 40, 60], abs=1)
    assert decisions[3].reset_after <= 60


async def test_tokens_come_back_over_the_window(limiter: RateLimiter) -> None:
    # Two tokens per half second: one every 0.25 s.
    for _ in range(2):
        assert (await limiter.hit("user-a", capacity=2, window=0.5)).allowed
    refused = await limiter.hit("user-a", capacity=2, window=0.5)
    assert refused.allowed is False
    assert 0 < refused.retry_after <= 0.25

    await asyncio.sleep(refused.retry_after + 0.05)
    assert (await limiter.hit("user-a", capacity=2, window=0.5)).allowed is True

    await asyncio.sleep(0.6)  # longer than the window: full again, never more than full
    after_idle = await limiter.hit("user-a", capacity=2, window=0.5)
    assert after_idle.allowed is True
    assert after_idle.remaining == 1


async def test_keys_have_separate_buckets(limiter: RateLimiter) -> None:
    assert (await limiter.hit("user-a", capacity=1, window=60)).allowed is True
    assert (await limiter.hit("user-a", capacity=1, window=60)).allowed is False

    other = await limiter.hit("user-b", capacity=1, window=60)
    assert other.allowed is True
    assert other.remaining == 0


async def test_concurrent_hits_never_exceed_capacity(limiter: RateLimiter) -> None:
    decisions = await asyncio.gather(
        *(limiter.hit("user-a", capacity=5, window=60) for _ in range(20))
    )

    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 5
    assert sorted(d.remaining for d in allowed) == [0, 1, 2, 3, 4]
    assert all(d.retry_after > 0 for d in decisions if not d.allowed)


@pytest.mark.parametrize(("capacity", "window"), [(0, 60.0), (5, 0.0)])
async def test_rejects_an_impossible_bucket(
    limiter: RateLimiter, capacity: int, window: float
) -> None:
    with pytest.raises(ValueError, match="bucket"):
        await limiter.hit("user-a", capacity=capacity, window=window)
