"""Web console sessions, kept server-side in the store (so every API replica shares them): the
browser holds only a random id, the store only that id's SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from pixelflow.adapters.store.protocol import Store
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.models import ConsoleSession

SESSION_TTL = timedelta(hours=12)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_ok(session: ConsoleSession, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented, session.csrf_token)


class SessionService:
    def __init__(self, *, store: Store, ttl: timedelta = SESSION_TTL, clock: Clock = utc_now):
        self.store = store
        self.ttl = ttl
        self.clock = clock

    async def open(
        self, *, user_id: str | None, key_id: str | None = None
    ) -> tuple[str, ConsoleSession]:
        """A new session, living ``ttl``; its id (for the browser's cookie) and its record."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = ConsoleSession(
            id_hash=_hash(session_id),
            csrf_token=secrets.token_urlsafe(32),
            user_id=user_id,
            key_id=key_id,
            created_at=now,
            expires_at=now + self.ttl,
        )
        await self.store.create_console_session(session)
        return session_id, session

    async def find(self, session_id: str | None) -> ConsoleSession | None:
        """The live session with this id, or None (none given, unknown, ended or expired)."""
        if not session_id or len(session_id) > 128:
            return None
        return await self.store.get_console_session(_hash(session_id), now=self.clock())

    async def end(self, session_id: str) -> None:
        await self.store.delete_console_session(_hash(session_id))
