"""The one mapping from domain errors to HTTP: found along the MRO, headers made from data."""

from __future__ import annotations

import msgspec
from starlette.requests import Request

from pixelflow.api.errors import pixelflow_error, status_of
from pixelflow.core import errors


class _UnavailableInput(errors.Unavailable, errors.InvalidInput):
    """Two mapped bases: the MRO (Unavailable first) decides, not a table's order."""


class _SpecificNotFound(errors.NotFound):
    """Not listed itself: takes its nearest listed base's status."""


def test_status_follows_the_mro_not_the_registration_order() -> None:
    assert status_of(_UnavailableInput("x")) == 503
    assert status_of(_SpecificNotFound("x")) == 404
    assert status_of(errors.StorageUnavailable("x")) == 503
    assert status_of(errors.ImageRejected("x")) == 500  # never an HTTP answer on purpose


async def test_rate_limited_carries_data_and_the_api_makes_the_headers() -> None:
    exc = errors.RateLimited("slow down", limit=60, remaining=0, reset_after=12.2, retry_after=0.3)
    assert not hasattr(exc, "headers")  # core errors carry no HTTP details

    response = await pixelflow_error(_request(), exc)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"  # at least one whole second
    assert response.headers["RateLimit-Limit"] == "60"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Reset"] == "13"
    assert msgspec.json.decode(response.body) == {"error": "slow down", "code": "rate_limited"}


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/jobs", "headers": []})
