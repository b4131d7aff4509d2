"""Every error leaves as ``{"error", "code"[, "details"]}`` JSON: one mapping, in one place."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pixelflow.api.auth import AuthenticationFailed
from pixelflow.api.ratelimit import rate_headers, retry_after_seconds
from pixelflow.core import errors
from pixelflow.core.wire import ErrorBody

log = logging.getLogger(__name__)

T = TypeVar("T")

# Looked up along the exception's MRO (as Starlette finds its handlers), so the most specific
# class wins whatever the order here; a class not listed takes its nearest listed base's entry.
_STATUS: dict[type[errors.PixelflowError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}


def _rate_limited_headers(exc: errors.PixelflowError) -> dict[str, str]:
    assert isinstance(exc, errors.RateLimited)
    return {
        **rate_headers(exc.limit, exc.remaining, exc.reset_after),
        "Retry-After": str(retry_after_seconds(exc.retry_after)),
    }


def _challenge_headers(exc: errors.PixelflowError) -> dict[str, str]:
    assert isinstance(exc, AuthenticationFailed)
    return {} if exc.challenge is None else {"WWW-Authenticate": exc.challenge}


# The HTTP headers an error's data becomes: core errors carry data, never HTTP details.
_HEADERS: dict[type[errors.PixelflowError], Callable[[errors.PixelflowError], dict[str, str]]] = {
    errors.RateLimited: _rate_limited_headers,
    AuthenticationFailed: _challenge_headers,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: dict[str, object] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = msgspec.json.encode(ErrorBody(error=message, code=code, details=details))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def by_mro(table: Mapping[type[errors.PixelflowError], T], exc: Exception) -> T | None:
    """The entry of the most specific class of ``exc`` found in ``table``."""
    for kind in type(exc).__mro__:
        if kind in table:
            return table[kind]
    return None


def status_of(exc: errors.PixelflowError) -> int:
    return by_mro(_STATUS, exc) or 500


async def pixelflow_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.PixelflowError)
    status = status_of(exc)
    to_headers = by_mro(_HEADERS, exc)
    headers = None if to_headers is None else to_headers(exc)
    if status == 500:
        log.error("unmapped error %s: %s", exc.code, exc.message)
        return error_response(500, "internal_error", "internal server error")
    return error_response(status, exc.code, exc.message, details=exc.details, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")


HANDLERS = {
    errors.PixelflowError: pixelflow_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
