"""KeyService and UsageService on a real SQLite store."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pixelflow.adapters.store.sqlite import SqliteStore
from pixelflow.core.errors import Conflict, InvalidInput, NotFound
from pixelflow.core.identity import new_key, public_prefix
from pixelflow.core.models import Usage
from pixelflow.services.keys import KeyService
from pixelflow.services.usage import UsageService
from tests.contract.store.helpers import S, drive, make_job, step


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 10, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class RecordingStore:
    """The real store, recording which of its methods are called."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await attribute(*args, **kwargs)

        return recorded


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "db.sqlite")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(store: SqliteStore, clock: Clock) -> KeyService:
    return KeyService(store=store, clock=clock)


async def test_a_created_key_is_stored_only_as_its_hash(
    keys: KeyService, store: SqliteStore
) -> None:
    created = await keys.create("alice", name="  ci  ")
    stored = await store.get_api_key(created.key.id)
    assert stored == created.key
    assert stored.name == "ci"
    assert stored.key_hash == hashlib.sha256(created.secret.encode()).hexdigest()
    assert created.secret not in repr(stored)


async def test_a_live_key_authenticates_as_its_user(keys: KeyService, clock: Clock) -> None:
    created = await keys.create("alice")
    key = await keys.authenticate(created.secret)
    assert key is not None and key.user_id == "alice"


async def test_last_use_is_recorded_at_most_once_a_minute(
    keys: KeyService, store: SqliteStore, clock: Clock
) -> None:
    created = await keys.create("alice")
    recording = RecordingStore(store)
    checking = KeyService(store=recording, clock=clock)

    await checking.authenticate(created.secret)
    first_use = clock.now
    clock.now += timedelta(seconds=59)
    await checking.authenticate(created.secret)
    assert recording.calls == ["get_api_key", "touch_api_key", "get_api_key"]
    stored = await store.get_api_key(created.key.id)
    assert stored is not None and stored.last_used_at == first_use

    clock.now += timedelta(seconds=1)
    await checking.authenticate(created.secret)
    stored = await store.get_api_key(created.key.id)
    assert stored is not None and stored.last_used_at == clock.now


async def test_wrong_unknown_revoked_and_malformed_keys_are_refused(keys: KeyService) -> None:
    created = await keys.create("alice")
    secret = created.secret
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    unknown = public_prefix("zzzzzzzz") + secret.removeprefix(public_prefix(created.key.id))
    for presented in (wrong, unknown, secret.upper(), "", "Bearer " + secret, secret + " "):
        assert await keys.authenticate(presented) is None, presented

    await keys.revoke(public_prefix(created.key.id))
    assert await keys.authenticate(secret) is None


async def test_no_such_key_costs_what_a_wrong_key_costs(
    keys: KeyService, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same store lookup and the same constant-time comparison on both paths: nothing
    but the answer differs (bench/bench_auth.py measures the time)."""
    created = await keys.create("alice")
    secret = created.secret
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    unknown = public_prefix("zzzzzzzz") + secret.removeprefix(public_prefix(created.key.id))

    compared: list[tuple[int, int]] = []
    real_compare = hmac.compare_digest

    def compare(a: str, b: str) -> bool:
        compared.append((len(a), len(b)))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare)
    work = []
    for presented in (wrong, unknown):
        recording = RecordingStore(store)
        compared.clear()
        checking = KeyService(store=recording)
        assert await checking.authenticate(presented) is None
        work.append((recording.calls, list(compared)))
    assert work[0] == work[1] == (["get_api_key"], [(64, 64)])


async def test_revoking_names_the_key_by_id_or_prefix(keys: KeyService) -> None:
    first = await keys.create("alice")
    second = await keys.create("alice")
    assert (await keys.revoke(first.key.id)).revoked_at is not None
    assert (await keys.revoke(public_prefix(second.key.id))).revoked_at is not None

    with pytest.raises(NotFound) as missing:
        await keys.revoke("pf_zzzzzzzz")
    assert missing.value.code == "api_key_not_found"
    with pytest.raises(InvalidInput) as garbage:
        await keys.revoke(first.secret)  # the full key is not how keys are named
    assert garbage.value.code == "invalid_key_ref"


async def test_a_taken_key_id_is_drawn_again(store: SqliteStore, clock: Clock) -> None:
    """Ids are random: a clash draws a new one, and only a run of clashes gives up."""
    first = new_key()
    draws = iter([first, first, new_key()])
    keys = KeyService(store=store, clock=clock, make_key=lambda: next(draws))
    assert (await keys.create("alice")).key.id == first[0]
    second = await keys.create("bob")
    assert second.key.id != first[0] and second.key.user_id == "bob"

    always = KeyService(store=store, clock=clock, make_key=lambda: first)
    with pytest.raises(Conflict) as caught:
        await always.create("carol")
    assert caught.value.code == "api_key_id_taken"
    assert sorted(key.user_id for key in await store.list_api_keys()) == ["alice", "bob"]


@pytest.mark.parametrize(
    ("user", "name", "code"),
    [
        ("", "", "invalid_user_id"),
        ("alice bob", "", "invalid_user_id"),
        ("alice", "x" * 101, "invalid_key_name"),
        ("alice", "line\nbreak", "invalid_key_name"),
    ],
)
async def test_bad_users_and_names_are_refused(
    keys: KeyService, user: str, name: str, code: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await keys.create(user, name=name)
    assert caught.value.code == code


async def test_a_day_report_has_every_day_and_adds_up(store: SqliteStore, clock: Clock) -> None:
    for when, pixels in ((datetime(2026, 3, 2, 23, tzinfo=UTC), 10), (clock.now, 5)):
        running = await drive(store, await store.create_job(make_job()), S.PROCESSING)
        usage = Usage(
            pixels_processed=pixels, bytes_in=3, bytes_out=2, bytes_saved=1, compute_time_ms=4
        )
        assert await store.transition(step(running, S.SUCCEEDED, when, usage=usage))

    report = await UsageService(store=store, clock=clock).report("alice", by_day=True)
    assert (report.start, report.end) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert report.days is not None
    assert [day.date for day in report.days] == [date(2026, 3, d) for d in range(1, 32)]
    assert {day.date.day: day.pixels_processed for day in report.days if day.jobs} == {
        2: 10,
        10: 5,
    }
    assert report.jobs == sum(day.jobs for day in report.days) == 2
    assert report.pixels_processed == 15

    flat = await UsageService(store=store, clock=clock).report("alice")
    assert flat.days is None and flat.pixels_processed == 15
