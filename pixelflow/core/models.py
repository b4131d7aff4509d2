"""msgspec Structs for every wire, storage and queue contract.

Request structs forbid unknown fields (strict decoding at every level); their ``Meta``
constraints are enforced by the decoder *and* published in the generated OpenAPI document.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from pixelflow.core.formats import FormatName, OutputFormat
from pixelflow.core.states import JobStatus

# ---------------------------------------------------------------------------------------------
# Pipeline steps (SPEC §3)
# ---------------------------------------------------------------------------------------------

StepId = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Unique within the job; names the output object.",
    ),
]
Dimension = Annotated[int, Meta(ge=1, le=16384)]
Offset = Annotated[int, Meta(ge=0, le=16384)]
Quality = Annotated[int, Meta(ge=1, le=100)]
Sigma = Annotated[float, Meta(ge=0.3, le=100)]
Gravity = Literal[
    "north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest", "center"
]
Fit = Literal["inside", "cover", "fill", "contain"]
SourceType = Literal["local_file", "s3_presigned"]


class StepBase(
    Struct, kw_only=True, forbid_unknown_fields=True, tag_field="action", omit_defaults=True
):
    id: StepId
    format: FormatName | None = None
    quality: Quality | None = None
    input: StepId | None = None
    emit: bool = True
    strip: bool = True


class ResizeStep(StepBase, tag="resize"):
    width: Dimension | None = None
    height: Dimension | None = None
    fit: Fit = "inside"
    upscale: bool = True


class WatermarkOptions(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    text: Annotated[str, Meta(min_length=1, max_length=256)]
    opacity: Annotated[float, Meta(ge=0, le=1)] = 0.65
    gravity: Gravity = "southeast"
    # Text height as a fraction of the image's shorter side; unset scales with the image.
    size: Annotated[float, Meta(gt=0, le=1)] | None = None
    color: Annotated[str, Meta(pattern=r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")] = "#ffffff"


class WatermarkStep(StepBase, tag="watermark"):
    watermark: WatermarkOptions


class CropStep(StepBase, tag="crop"):
    width: Dimension
    height: Dimension
    gravity: Gravity | Literal["smart"] | None = None
    x: Offset | None = None
    y: Offset | None = None


class RotateStep(StepBase, tag="rotate"):
    angle: Literal[90, 180, 270]


class FlipStep(StepBase, tag="flip"):
    direction: Literal["horizontal", "vertical"]


class BlurStep(StepBase, tag="blur"):
    sigma: Sigma


class SharpenStep(StepBase, tag="sharpen"):
    sigma: Sigma


class ConvertStep(StepBase, tag="convert"):
    pass


Step = (
    ResizeStep
    | WatermarkStep
    | CropStep
    | RotateStep
    | FlipStep
    | BlurStep
    | SharpenStep
    | ConvertStep
)

# ---------------------------------------------------------------------------------------------
# Job records
# ---------------------------------------------------------------------------------------------


class Output(Struct, kw_only=True):
    step_id: str
    action: str
    format: OutputFormat
    object_key: str
    bytes: int
    width: int
    height: int
    content_type: str


class JobError(Struct, kw_only=True):
    code: str
    message: str


class Usage(Struct, kw_only=True):
    pixels_processed: int
    bytes_in: int
    bytes_out: int
    bytes_saved: int
    compute_time_ms: int


class WebhookStatus(Struct, kw_only=True):
    """Where the delivery of a job's outcome event stands (shown on ``GET /v1/jobs/{id}``)."""

    event: str
    event_id: str
    state: str  # pending | delivered | failed
    attempts: int
    last_status: int | None = None
    next_attempt_at: datetime | None = None


class Job(Struct, kw_only=True):
    """A job as the store keeps it. Internal fields never leave through the API as-is."""

    id: str
    user_id: str
    status: JobStatus
    source_type: SourceType
    object_key: str
    webhook_url: str | None
    pipeline: list[Step]
    created_at: datetime
    updated_at: datetime
    outputs: list[Output] = msgspec.field(default_factory=list)
    error: JobError | None = None
    attempts: int = 0
    source_bytes: int | None = None
    # The source version `start` verified; the worker processes exactly that one.
    source_etag: str | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # An attempt's claim on the job; the reconciler recovers a job whose lease ran out.
    lease_expires_at: datetime | None = None
    # Earliest time a queued retry should run (backoff); None means "now".
    run_after: datetime | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    traceparent: str | None = None
    usage: Usage | None = None
    # Read from webhook_events; the store writes it only through ``transition``.
    webhook: WebhookStatus | None = None


class Transition(Struct, kw_only=True):
    """One conditional state change, applied atomically by ``Store.transition``.

    It succeeds only if the job's status is one of ``expected`` (and, when ``attempt`` is
    given, its attempt counter still equals it: a fencing token that stops a worker whose
    lease was taken over from writing anything).
    """

    job_id: str
    expected: frozenset[JobStatus]
    target: JobStatus
    at: datetime
    attempt: int | None = None
    begin_attempt: bool = False  # attempts += 1 (used by the queued → processing claim)
    lease_expires_at: datetime | None = None
    run_after: datetime | None = None
    source_bytes: int | None = None
    source_etag: str | None = None
    outputs: list[Output] | None = None
    error: JobError | None = None
    usage: Usage | None = None  # upserted into usage_logs in the same transaction


class JobPage(Struct, kw_only=True):
    jobs: list[Job]
    next_cursor: str | None


# ---------------------------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------------------------


class WebhookEvent(Struct, kw_only=True):
    """One job outcome to deliver: recorded with the transition that caused it."""

    id: str  # evt_…, the Standard Webhooks webhook-id: stable across retries
    job_id: str
    user_id: str
    event: str
    url: str
    payload: bytes  # the exact body every attempt sends
    state: str  # pending | delivered | failed
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    lease_expires_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None


class WebhookAttempt(Struct, kw_only=True):
    """The result of one delivery attempt, recorded by ``Store.record_webhook_attempt``."""

    event_id: str
    attempt: int  # 1-based; the event's attempts counter must be attempt - 1
    attempted_at: datetime
    duration_ms: int
    state: str  # the event's state after this attempt
    status_code: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None


class WebhookDelivery(Struct, kw_only=True):
    """One row of ``webhook_deliveries``: one attempt, as it happened."""

    event_id: str
    attempt: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None


class WebhookSecret(Struct, kw_only=True):
    """A user's signing secret, and the one it replaced while that still signs."""

    user_id: str
    secret: str
    created_at: datetime
    previous_secret: str | None = None
    previous_expires_at: datetime | None = None

    def signing(self, now: datetime) -> list[str]:
        """The secrets that sign at ``now``, newest first."""
        previous, until = self.previous_secret, self.previous_expires_at
        if previous is not None and until is not None and now < until:
            return [self.secret, previous]
        return [self.secret]


# ---------------------------------------------------------------------------------------------
# API keys and usage reports
# ---------------------------------------------------------------------------------------------


class ApiKey(Struct, kw_only=True):
    """A key as the store keeps it: the public lookup id and the hash, never the key."""

    id: str
    user_id: str
    name: str
    key_hash: str  # hex SHA-256 of the full key (core/identity.py)
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ConsoleSession(Struct, kw_only=True):
    """A web console session as the store keeps it: the SHA-256 of its id, never the id."""

    id_hash: str
    csrf_token: str
    # api_key mode: the signed-in key's user and id (None until sign-in); none and header
    # modes: the user of the request that opened it (it then only carries the CSRF token).
    user_id: str | None
    key_id: str | None
    created_at: datetime
    expires_at: datetime


class UsageTotals(Struct, kw_only=True):
    """Usage summed over the ``usage_logs`` rows of a time range (one row per succeeded job)."""

    jobs: int
    pixels_processed: int
    bytes_in: int
    bytes_out: int
    bytes_saved: int
    compute_time_ms: int


class UsageDay(UsageTotals, kw_only=True):
    date: date  # the UTC day


# ---------------------------------------------------------------------------------------------
# Queue contract
# ---------------------------------------------------------------------------------------------


class JobTask(Struct, kw_only=True, forbid_unknown_fields=False):
    """What travels through the queue: only an id (the database holds the truth)."""

    job_id: str
    traceparent: str | None = None
