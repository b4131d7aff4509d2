"""Who is looking at the console, per ``PIXELFLOW_AUTH`` mode.

- ``none`` (``serve`` on loopback): everyone is the anonymous user; no sign-in.
- ``header``: the authenticating gateway's header names the user for pages as for the API
  (the same authenticator reads it); the session only carries the CSRF token, bound to that
  user.
- ``api_key``: the user signs in at ``/console/login`` with an API key; the session (in the
  store, shared by every replica) names the key by id, and the key is checked on every request
  (a revoked key ends the session).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from pixelflow.api.deps import state
from pixelflow.core.models import ConsoleSession
from pixelflow.services.sessions import SessionService

COOKIE = "pixelflow_session"


@dataclass
class Caller:
    session_id: str
    session: ConsoleSession
    # None: nobody is signed in (api_key mode without a signed-in session).
    user_id: str | None
    # The session was opened by this request: its cookie must be set on the response.
    new_session: bool


class ConsoleIdentity:
    def __init__(self, *, mode: str) -> None:
        self.mode = mode

    async def caller(self, request: Request) -> Caller:
        sessions = _sessions(request)
        session_id = request.cookies.get(COOKIE, "")
        session = await sessions.find(session_id)
        if self.mode == "api_key":
            if session is None:
                return await _fresh(sessions, user_id=None)
            return await self._signed_in(request, session_id, session)
        # none and header: the API's authenticator names the user (header mode raises 401
        # when the gateway's header is missing or malformed).
        user = await state(request).auth.user_id(request)
        if session is not None and session.user_id == user:
            return Caller(session_id, session, user, new_session=False)
        return await _fresh(sessions, user_id=user)

    async def _signed_in(
        self, request: Request, session_id: str, session: ConsoleSession
    ) -> Caller:
        if session.key_id is None:
            return Caller(session_id, session, None, new_session=False)
        key = await state(request).ctx.keys.live(session.key_id)
        if key is None or key.user_id != session.user_id:
            # The key was revoked since sign-in: the session ends here.
            await _sessions(request).end(session_id)
            return await _fresh(_sessions(request), user_id=None)
        return Caller(session_id, session, key.user_id, new_session=False)

    async def sign_in(self, request: Request, caller: Caller, api_key: str) -> Caller | None:
        """A new session for the key's user (a new id: the pre-sign-in one is ended, so a
        planted session id is worth nothing), or None when the key is not valid. The API's own
        key check: one lookup, compared in constant time."""
        key = await state(request).ctx.keys.authenticate(api_key)
        if key is None:
            return None
        sessions = _sessions(request)
        await sessions.end(caller.session_id)
        return await _fresh(sessions, user_id=key.user_id, key_id=key.id)

    async def sign_out(self, request: Request, caller: Caller) -> Caller:
        sessions = _sessions(request)
        await sessions.end(caller.session_id)
        return await _fresh(sessions, user_id=None)


def _sessions(request: Request) -> SessionService:
    return state(request).ctx.sessions


async def _fresh(
    sessions: SessionService, *, user_id: str | None, key_id: str | None = None
) -> Caller:
    session_id, session = await sessions.open(user_id=user_id, key_id=key_id)
    return Caller(session_id, session, user_id, new_session=True)
