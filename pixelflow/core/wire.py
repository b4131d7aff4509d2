"""Request and response shapes of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from pixelflow.core.models import (
    Job,
    JobError,
    Output,
    SourceType,
    Step,
    Usage,
    UsageDay,
    UsageTotals,
    WebhookStatus,
)
from pixelflow.core.states import JobStatus


class CreateJobRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    source_type: SourceType
    # Required for local_file: a path relative to PIXELFLOW_LOCAL_SOURCE_ROOT.
    object_key: str = ""
    webhook_url: str | None = None
    pipeline: Annotated[list[Step], Meta(min_length=1)]


class PresignedPostInfo(Struct, kw_only=True):
    """A size-bounded upload: POST ``url`` as multipart/form-data with every field of ``fields``,
    then the image as a last part named ``file``."""

    url: str
    fields: dict[str, str]


class UploadInfo(Struct, kw_only=True):
    object_key: str
    # Any size (the original PixelFlow's upload): the worker still reads at most the limit.
    presigned_put_url: str
    presigned_url_state: Literal["ready", "not_required"]
    expires_at: datetime | None = None
    # The bounded twin of presigned_put_url: the storage refuses more than max_source_bytes.
    presigned_post: PresignedPostInfo | None = None


class CreateJobResponse(Struct, kw_only=True):
    job_id: str
    status: JobStatus
    upload: UploadInfo
    start_url: str
    job_url: str


class StartJobResponse(Struct, kw_only=True):
    job_id: str
    status: JobStatus
    queue: str
    task_id: str
    # "enqueued": this call queued the job and the queue took it; "pending_reconcile": the job
    # is queued in the database but the queue could not be reached, so the reconciler will
    # enqueue it once the queue is back; "already_started": it was in flight, nothing done.
    state: Literal["enqueued", "pending_reconcile", "already_started"]
    enqueued_at: datetime | None


class JobRecord(Struct, kw_only=True):
    """The job as clients see it: the API's job view and every webhook body share it."""

    id: str
    job_id: str
    user_id: str
    status: JobStatus
    source_type: SourceType
    object_key: str
    webhook_url: str | None
    pipeline: list[Step]
    outputs: list[Output]
    error: JobError | None
    attempts: int
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    usage: Usage | None


class WebhookView(Struct, kw_only=True):
    event: str
    event_id: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    next_attempt_at: datetime | None


class JobView(JobRecord, kw_only=True):
    # Present once the job has an outcome event (it has a webhook_url and has finished).
    webhook: WebhookView | None = None


class WebhookEventBody(JobRecord, kw_only=True):
    """A webhook's body: the job record plus the event's name and id (SPEC §5)."""

    event: str
    event_id: str


class WebhookSecretView(Struct, kw_only=True):
    secret: str
    # After a rotation: until when the previous secret still signs.
    previous_expires_at: datetime | None = None


def job_record_fields(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "job_id": job.id,
        "user_id": job.user_id,
        "status": job.status,
        "source_type": job.source_type,
        "object_key": job.object_key,
        "webhook_url": job.webhook_url,
        "pipeline": job.pipeline,
        "outputs": job.outputs,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": job.created_at,
        "queued_at": job.queued_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
        "usage": job.usage,
    }


def webhook_view(status: WebhookStatus | None) -> WebhookView | None:
    if status is None:
        return None
    return WebhookView(
        event=status.event,
        event_id=status.event_id,
        state=status.state,  # type: ignore[arg-type]  # the store's CHECK allows only these
        attempts=status.attempts,
        last_status=status.last_status,
        next_attempt_at=status.next_attempt_at,
    )


def job_view(job: Job) -> JobView:
    return JobView(**job_record_fields(job), webhook=webhook_view(job.webhook))


def event_body(job: Job, *, event: str, event_id: str) -> WebhookEventBody:
    return WebhookEventBody(**job_record_fields(job), event=event, event_id=event_id)


class JobList(Struct, kw_only=True):
    jobs: list[JobView]
    next_cursor: str | None


# The largest page of GET /v1/jobs.
LIST_LIMIT_MAX = 100


class ListJobsQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    """GET /v1/jobs's query string. An absent parameter is UNSET, never None: lax decoding
    would read the text "null" as None."""

    limit: Annotated[int, Meta(ge=1, le=LIST_LIMIT_MAX, description="Page size.")] = 20
    cursor: Annotated[
        str | UnsetType, Meta(description="The previous page's next_cursor (none: first page).")
    ] = UNSET
    status: Annotated[JobStatus | UnsetType, Meta(description="Only jobs in this status.")] = UNSET


class SignedPostFields(Struct, kw_only=True):
    """The signed fields of a form upload to the embedded storage (``upload.presigned_post``):
    pass them back as they were given."""

    key: str = ""
    expires: str = ""
    max_bytes: str = ""
    signature: str = ""


class SignedUrlQuery(Struct, kw_only=True):
    """The query string of an upload URL signed by the embedded storage (which the API serves):
    pass it back as it was given."""

    method: Annotated[str, Meta(description="The method the URL was signed for.")] = ""
    expires: Annotated[str, Meta(description="Expiry, in Unix seconds.")] = ""
    signature: Annotated[str, Meta(description="HMAC-SHA256 of method, key and expiry.")] = ""


class UsageQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    """GET /v1/usage's query string. The bounds stay text here: ``core.usage.parse_instant``
    reads them (RFC 3339, or a date) and refuses them with ``invalid_time_range``."""

    start: Annotated[
        str | UnsetType,
        Meta(
            description="RFC 3339 time, or a date (00:00 UTC). Default: the start of the UTC "
            "calendar month in which the range ends."
        ),
    ] = msgspec.field(default=UNSET, name="from")
    end: Annotated[
        str | UnsetType,
        Meta(description="RFC 3339 time, or a date; exclusive. Default: next month's start."),
    ] = msgspec.field(default=UNSET, name="to")
    group: Annotated[
        Literal["day"] | UnsetType, Meta(description="day: add one row per UTC day.")
    ] = UNSET


class UsageReport(UsageTotals, kw_only=True, omit_defaults=True):
    """``GET /v1/usage``: the caller's totals over ``[from, to)``, and per UTC day with
    ``group=day``."""

    user_id: str
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    days: list[UsageDay] | None = None


class ErrorBody(Struct, kw_only=True, omit_defaults=True):
    error: str
    code: str
    details: dict[str, Any] | None = None


class HealthStatus(Struct, kw_only=True, omit_defaults=True):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] | None = None
    # Set when not ready, so the body is also a regular error body.
    error: str | None = None
    code: str | None = None
