"""Who is looking at the console, per ``PIXELFLOW_AUTH`` mode.

- ``none`` (``serve`` on loopback): everyone is the anonymous user; no sign-in.
- ``header``: the authenticating gateway's header names the user for pages as for the API
  (the same authenticator reads it); the session only carries the CSRF token, bound to that
  user.
- ``api_key``: the user signs in at ``/console/login`` with an API key; the session keeps the
  key server-side and it is checked again on every request (a revoked key ends the session).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from pixelflow.api.deps import state
from pixelflow.console.sessions import COOKIE, Session, SessionStore


@dataclass
class Caller:
    session: Session
    # None: nobody is signed in (api_key mode without a session).
    user_id: str | None
    # The session was opened by this request: its cookie must be set on the response.
    new_session: bool


class ConsoleIdentity:
    def __init__(self, *, mode: str, sessions: SessionStore) -> None:
        self.mode = mode
        self.sessions = sessions

    async def caller(self, request: Request) -> Caller:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if self.mode == "api_key":
            return await self._signed_in(request, session)
        # none and header: the API's authenticator names the user (header mode raises 401
        # when the gateway's header is missing or malformed).
        user = await state(request).auth.user_id(request)
        if session is not None and session.user_id == user:
            return Caller(session=session, user_id=user, new_session=False)
        return Caller(session=self.sessions.create(user_id=user), user_id=user, new_session=True)

    async def _signed_in(self, request: Request, session: Session | None) -> Caller:
        if session is None:
            return Caller(
                session=self.sessions.create(user_id=None), user_id=None, new_session=True
            )
        if session.api_key is None:
            return Caller(session=session, user_id=None, new_session=False)
        user = await _user_of(request, session.api_key)
        if user is None or user != session.user_id:
            # The key was revoked since sign-in: the session ends here.
            self.sessions.drop(session.id)
            fresh = self.sessions.create(user_id=None)
            return Caller(session=fresh, user_id=None, new_session=True)
        return Caller(session=session, user_id=user, new_session=False)

    async def sign_in(self, request: Request, caller: Caller, api_key: str) -> Caller | None:
        """A new session for the key's user (a new id: the pre-sign-in one is dropped, so a
        planted session id is worth nothing), or None when the key is not valid."""
        user = await _user_of(request, api_key)
        if user is None:
            return None
        self.sessions.drop(caller.session.id)
        session = self.sessions.create(user_id=user, api_key=api_key)
        return Caller(session=session, user_id=user, new_session=True)

    def sign_out(self, caller: Caller) -> Caller:
        self.sessions.drop(caller.session.id)
        return Caller(session=self.sessions.create(user_id=None), user_id=None, new_session=True)


async def _user_of(request: Request, api_key: str) -> str | None:
    """The user of a live key (the API's own key service: one lookup, constant-time compare),
    or None for a malformed, unknown, wrong or revoked one."""
    key = await state(request).ctx.keys.authenticate(api_key)
    return None if key is None else key.user_id
