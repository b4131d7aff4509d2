"""Who is calling (SPEC §2). Modes: ``api_key`` (bearer keys, the default for ``api``),
``header`` (trust an authenticating gateway's header) and ``none`` (local development).

Every failure is a 401 ``unauthorized``; in ``api_key`` mode it carries
``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

from pixelflow.core.errors import Unauthorized
from pixelflow.core.identity import is_user_id
from pixelflow.services.keys import KeyService

ANONYMOUS = "anonymous"
_BEARER = 'Bearer realm="pixelflow"'


class AuthenticationFailed(Unauthorized):
    """No usable credentials; ``challenge`` is the ``WWW-Authenticate`` value, if any."""

    def __init__(self, message: str, *, challenge: str | None = None) -> None:
        super().__init__(message, code="unauthorized")
        self.challenge = challenge


class Authenticator(Protocol):
    async def user_id(self, request: Request) -> str: ...


class NoAuth:
    async def user_id(self, request: Request) -> str:
        return ANONYMOUS


class HeaderAuth:
    """Trusts the header set by an authenticating gateway. The original PixelFlow let a
    request without it into a shared ``anonymous`` tenant; here anything but exactly one
    well-formed value is a 401."""

    def __init__(self, header: str) -> None:
        self.header = header

    async def user_id(self, request: Request) -> str:
        values = request.headers.getlist(self.header)
        if not values or not values[0].strip():
            raise AuthenticationFailed(f"the {self.header} header is required")
        if len(values) > 1:
            raise AuthenticationFailed(f"the {self.header} header must be sent once")
        if not is_user_id(values[0]):
            raise AuthenticationFailed(
                f"the {self.header} header must be 1..128 characters of A-Z a-z 0-9 . _ @ : + -"
            )
        return values[0]


class ApiKeyAuth:
    """``Authorization: Bearer pf_…``, checked against the store on every request."""

    def __init__(self, keys: KeyService) -> None:
        self.keys = keys

    async def user_id(self, request: Request) -> str:
        values = request.headers.getlist("authorization")
        if not values:
            raise AuthenticationFailed(
                "an API key is required: Authorization: Bearer <key>", challenge=_BEARER
            )
        scheme, _, token = values[0].partition(" ")
        if len(values) > 1 or scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed(
                "the Authorization header must be sent once, as Bearer <key>",
                challenge=f'{_BEARER}, error="invalid_request"',
            )
        key = await self.keys.authenticate(token.strip())
        if key is None:
            # One answer for malformed, unknown, wrong and revoked keys.
            raise AuthenticationFailed(
                "the API key is not valid", challenge=f'{_BEARER}, error="invalid_token"'
            )
        return key.user_id


def authenticator_for(mode: str, *, header: str, keys: KeyService) -> Authenticator:
    if mode == "api_key":
        return ApiKeyAuth(keys)
    if mode == "header":
        return HeaderAuth(header)
    if mode == "none":
        return NoAuth()
    raise ValueError(f"unsupported auth mode {mode!r}")
