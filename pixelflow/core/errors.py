"""Domain errors, each carrying a stable machine-readable ``code``.

The API maps error *classes* to HTTP statuses in one place (``pixelflow.api.errors``);
the worker uses ``transient`` to decide between "retry later" and "fail the job now".
"""

from __future__ import annotations

from typing import Any


class PixelflowError(Exception):
    """Base of every error PixelFlow raises on purpose."""

    code: str = "internal_error"
    transient: bool = False

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class InvalidInput(PixelflowError):
    """The request is malformed or names something impossible (HTTP 400)."""

    code = "invalid_request"


class Unauthorized(PixelflowError):
    """No or bad credentials (HTTP 401)."""

    code = "unauthorized"


class NotFound(PixelflowError):
    """The thing does not exist, or belongs to someone else (HTTP 404)."""

    code = "not_found"


class Conflict(PixelflowError):
    """The request is valid but the current state forbids it (HTTP 409)."""

    code = "conflict"


class PayloadTooLarge(PixelflowError):
    """A body or upload is larger than allowed (HTTP 413)."""

    code = "body_too_large"


class UnsupportedMediaType(PixelflowError):
    """The body is not JSON (HTTP 415)."""

    code = "unsupported_media_type"


class RateLimited(PixelflowError):
    """The caller's token bucket is empty (HTTP 429)."""

    code = "rate_limited"

    def __init__(
        self, message: str, *, limit: int, remaining: int, reset_after: float, retry_after: float
    ) -> None:
        super().__init__(message)
        # The bucket's state, in seconds and tokens; the API turns it into headers.
        self.limit = limit
        self.remaining = remaining
        self.reset_after = reset_after
        self.retry_after = retry_after


class Unavailable(PixelflowError):
    """A dependency (storage, database, queue) cannot be reached: try again later (HTTP 503)."""

    code = "unavailable"
    transient = True


class StorageUnavailable(Unavailable):
    code = "storage_unavailable"


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"


class QueueUnavailable(Unavailable):
    code = "queue_unavailable"


class ImageRejected(PixelflowError):
    """The source image cannot be processed; retrying will not help (fails the job)."""

    code = "invalid_image"


class SourceTooLarge(ImageRejected):
    code = "source_too_large"


class SourceChanged(ImageRejected):
    """The uploaded source was replaced after ``start`` verified it: the job processes exactly
    the object that was checked, or nothing."""

    code = "source_changed"


class UnexpectedError(PixelflowError):
    """Something PixelFlow did not foresee (a bug, an unmapped dependency error). Treated as
    transient: retried within the attempt limit, then the job fails with it."""

    code = "internal_error"
    transient = True


class ProcessingTimeout(PixelflowError):
    """A job attempt ran past ``WORKER_JOB_TIMEOUT``; another attempt may succeed."""

    code = "timeout"
    transient = True


class RenderTimeout(ProcessingTimeout):
    """The render itself ran past ``WORKER_JOB_TIMEOUT`` (it was stopped). Unlike a slow fetch
    or store, it will most likely run out of time again: retried at most once."""

    code = "render_timeout"
