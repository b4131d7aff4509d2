"""The Store contract for API keys and usage reports, run against every implementation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from pixelflow.adapters.store.protocol import Store
from pixelflow.core.models import ApiKey, Usage, UsageDay, UsageTotals
from tests.contract.store.helpers import T0, S, drive, make_job, step

# -- API keys ----------------------------------------------------------------------------------


def make_key(key_id: str, *, user_id: str = "alice", created_at: datetime = T0) -> ApiKey:
    return ApiKey(
        id=key_id,
        user_id=user_id,
        name=f"{key_id} for CI",
        key_hash="ab" * 32,
        created_at=created_at,
    )


async def test_a_key_reads_back_equal_and_its_id_is_taken_once(store: Store) -> None:
    key = make_key("k1aaaaaa")
    assert await store.create_api_key(key) is True
    assert await store.get_api_key("k1aaaaaa") == key

    clash = make_key("k1aaaaaa", user_id="mallory")
    assert await store.create_api_key(clash) is False
    assert await store.get_api_key("k1aaaaaa") == key
    assert await store.get_api_key("k0nosuch") is None


async def test_keys_are_listed_oldest_first_and_by_user(store: Store) -> None:
    second = make_key("k2bbbbbb", created_at=T0 + timedelta(seconds=2))
    first = make_key("k3cccccc", created_at=T0 + timedelta(seconds=1))
    other = make_key("k4dddddd", user_id="bob", created_at=T0 + timedelta(seconds=3))
    for key in (second, first, other):
        assert await store.create_api_key(key)

    assert await store.list_api_keys() == [first, second, other]
    assert await store.list_api_keys(user_id="alice") == [first, second]
    assert await store.list_api_keys(user_id="nobody") == []


async def test_a_revocation_keeps_its_first_time(store: Store) -> None:
    key = make_key("k5eeeeee")
    await store.create_api_key(key)

    revoked = await store.revoke_api_key(key.id, at=T0 + timedelta(minutes=1))
    assert revoked is not None and revoked.revoked_at == T0 + timedelta(minutes=1)
    again = await store.revoke_api_key(key.id, at=T0 + timedelta(minutes=2))
    assert again == revoked
    assert await store.get_api_key(key.id) == revoked
    assert await store.revoke_api_key("k0nosuch", at=T0) is None


async def test_last_use_only_moves_forward(store: Store) -> None:
    key = make_key("k6ffffff")
    await store.create_api_key(key)

    await store.touch_api_key(key.id, at=T0 + timedelta(seconds=30))
    await store.touch_api_key(key.id, at=T0 + timedelta(seconds=10))  # a slower replica
    stored = await store.get_api_key(key.id)
    assert stored is not None and stored.last_used_at == T0 + timedelta(seconds=30)


# -- usage reports -----------------------------------------------------------------------------

MICRO = timedelta(microseconds=1)
DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY2 + timedelta(days=1)


def usage(n: int) -> Usage:
    # Pixels beyond 2^32 make sure sums stay exact 64-bit integers.
    return Usage(
        pixels_processed=5_000_000_000 * n,
        bytes_in=1000 * n,
        bytes_out=100 * n,
        bytes_saved=900 * n,
        compute_time_ms=7 * n,
    )


def totals(*ns: int) -> UsageTotals:
    return UsageTotals(
        jobs=len(ns),
        pixels_processed=sum(usage(n).pixels_processed for n in ns),
        bytes_in=sum(usage(n).bytes_in for n in ns),
        bytes_out=sum(usage(n).bytes_out for n in ns),
        bytes_saved=sum(usage(n).bytes_saved for n in ns),
        compute_time_ms=sum(usage(n).compute_time_ms for n in ns),
    )


def day(when: date, *ns: int) -> UsageDay:
    return UsageDay(
        date=when, **{f: getattr(totals(*ns), f) for f in UsageTotals.__struct_fields__}
    )


async def succeed_at(store: Store, user_id: str, when: datetime, n: int) -> None:
    running = await drive(store, await store.create_job(make_job(user_id=user_id)), S.PROCESSING)
    assert await store.transition(step(running, S.SUCCEEDED, when, usage=usage(n))) is not None


async def seed_usage(store: Store) -> None:
    """Rows on both sides of each boundary of the range [DAY1, DAY3) and of its days."""
    await succeed_at(store, "alice", DAY1 - MICRO, 1)  # before the range
    await succeed_at(store, "alice", DAY1, 2)  # the range's first instant
    await succeed_at(store, "alice", DAY2 - MICRO, 3)  # day 1's last instant
    await succeed_at(store, "alice", DAY2, 4)  # day 2's first instant
    await succeed_at(store, "bob", DAY2 + timedelta(hours=12), 50)  # another user
    await succeed_at(store, "alice", DAY3, 6)  # `to` is exclusive


async def test_usage_totals_cover_exactly_the_range_and_the_user(store: Store) -> None:
    await seed_usage(store)

    assert await store.usage_totals("alice", start=DAY1, end=DAY3) == totals(2, 3, 4)
    assert await store.usage_totals("alice", start=DAY1 - MICRO, end=DAY3 + MICRO) == totals(
        1, 2, 3, 4, 6
    )
    assert await store.usage_totals("bob", start=DAY1, end=DAY3) == totals(50)
    # An offset other than UTC names the same instants.
    paris = timezone(timedelta(hours=1))
    start = datetime(2026, 3, 1, 1, 0, tzinfo=paris)
    assert await store.usage_totals("alice", start=start, end=DAY3) == totals(2, 3, 4)


async def test_usage_of_nothing_is_zero(store: Store) -> None:
    assert await store.usage_totals("alice", start=DAY1, end=DAY3) == totals()
    assert await store.usage_days("alice", start=DAY1, end=DAY3) == []


async def test_usage_days_split_at_utc_midnight(store: Store) -> None:
    await seed_usage(store)

    assert await store.usage_days("alice", start=DAY1, end=DAY3) == [
        day(DAY1.date(), 2, 3),
        day(DAY2.date(), 4),
    ]
    # A range starting mid-day counts only that day's rows inside the range.
    assert await store.usage_days("alice", start=DAY1 + timedelta(hours=12), end=DAY3) == [
        day(DAY1.date(), 3),
        day(DAY2.date(), 4),
    ]
    wide = await store.usage_days("alice", start=DAY1 - timedelta(days=1), end=DAY3 + MICRO)
    assert wide == [
        day((DAY1 - MICRO).date(), 1),
        day(DAY1.date(), 2, 3),
        day(DAY2.date(), 4),
        day(DAY3.date(), 6),
    ]
