"""Console sign-in sessions, kept server-side: the browser holds only a random id.

One process's memory, with expiry: enough for ``serve`` and for one ``api`` replica. Several
replicas need sticky sessions in front of them (docs/console.md).
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from pixelflow.core.clock import Clock, utc_now

COOKIE = "pixelflow_session"


@dataclass
class Session:
    id: str
    csrf_token: str
    # Who the session belongs to: in api_key mode the signed-in key's user (None until sign-in);
    # in none and header modes the user of the request that opened it (the session then only
    # carries the CSRF token, and a different user gets a session of their own).
    user_id: str | None
    # api_key mode: the key the user signed in with, checked again on every request so that a
    # revoked key ends its sessions at once. Never sent to the browser.
    api_key: str | None
    expires_at: datetime

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf_token)


class SessionStore:
    """Sessions by id, each living ``ttl`` from its creation; the oldest are dropped past
    ``max_sessions`` so that anonymous page views cannot grow memory without bound."""

    def __init__(
        self, *, ttl: timedelta, max_sessions: int = 10_000, clock: Clock = utc_now
    ) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, *, user_id: str | None, api_key: str | None = None) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            user_id=user_id,
            api_key=api_key,
            expires_at=self.clock() + self.ttl,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is not None and session.expires_at <= self.clock():
            self.drop(session_id)
            return None
        return session

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
