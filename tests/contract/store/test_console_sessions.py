"""The Store contract for web console sessions, run against every implementation; and the
session service over a real store (ids hashed, expiry, end)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from pixelflow.adapters.store.protocol import Store
from pixelflow.core.models import ConsoleSession
from pixelflow.services.sessions import SessionService, csrf_ok
from tests.contract.store.helpers import T0


def make_session(id_hash: str, *, created_at: datetime = T0, hours: int = 12) -> ConsoleSession:
    return ConsoleSession(
        id_hash=id_hash,
        csrf_token=f"csrf-{id_hash}",
        user_id="alice",
        key_id="k1aaaaaa",
        created_at=created_at,
        expires_at=created_at + timedelta(hours=hours),
    )


async def test_a_session_reads_back_until_it_expires_or_ends(store: Store) -> None:
    session = make_session("h1")
    await store.create_console_session(session)
    assert await store.get_console_session("h1", now=T0) == session
    assert await store.get_console_session("h1", now=session.expires_at) is None
    assert await store.get_console_session("h0", now=T0) is None

    await store.delete_console_session("h1")
    assert await store.get_console_session("h1", now=T0) is None
    await store.delete_console_session("h1")  # ending an ended session is not an error


async def test_expired_sessions_are_deleted_when_another_is_opened(store: Store) -> None:
    old = make_session("old", hours=1)
    live = make_session("live", hours=24)
    await store.create_console_session(old)
    await store.create_console_session(live)
    later = T0 + timedelta(hours=2)
    await store.create_console_session(make_session("new", created_at=later))
    # Read as of T0, "old" would still be live, had it not been deleted.
    assert await store.get_console_session("old", now=T0) is None
    assert await store.get_console_session("live", now=T0) == live


async def test_the_service_keeps_only_the_hash_of_the_id(store: Store) -> None:
    clock = [T0]
    sessions = SessionService(store=store, ttl=timedelta(hours=1), clock=lambda: clock[0])
    session_id, opened = await sessions.open(user_id=None)
    assert opened.id_hash == hashlib.sha256(session_id.encode()).hexdigest() != session_id
    assert await store.get_console_session(session_id, now=T0) is None
    assert await sessions.find(session_id) == opened
    assert csrf_ok(opened, opened.csrf_token) and not csrf_ok(opened, None)
    assert not csrf_ok(opened, opened.csrf_token[:-1] + "x")
    for bad in (None, "", "x" * 129, session_id + "x"):
        assert await sessions.find(bad) is None

    clock[0] = T0 + timedelta(hours=1)
    assert await sessions.find(session_id) is None  # expired
    other_id, _ = await sessions.open(user_id="bob", key_id="k2bbbbbb")
    await sessions.end(other_id)
    assert await sessions.find(other_id) is None
