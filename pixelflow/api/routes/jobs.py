"""/v1/jobs: each handler authenticates, parses, calls one service method and renders; each
route declares its ``Spec`` (the OpenAPI document is built from these)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pixelflow.api.body import read_json_body
from pixelflow.api.deps import route_template, state
from pixelflow.api.render import job_view, json_response, stream_response
from pixelflow.api.spec import ApiRoute, Header, Raw, Spec
from pixelflow.core.errors import InvalidInput
from pixelflow.core.validation import decode_create_request, decode_query, given
from pixelflow.core.wire import (
    CreateJobRequest,
    CreateJobResponse,
    JobList,
    JobView,
    ListJobsQuery,
    StartJobResponse,
)
from pixelflow.services.jobs import Redirect
from pixelflow.telemetry.tracing import current_traceparent

_MAX_IDEMPOTENCY_KEY = 255


async def create_job(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    headers = await api.limiter.take(user, route_template(request))
    body = await read_json_body(request, limit=api.ctx.settings.max_body_bytes)
    job_request = decode_create_request(body)
    created = await api.ctx.jobs.create(
        user,
        job_request,
        idempotency_key=_idempotency_key(request),
        # The job's trace is this request's (its span when tracing is on, else the caller's).
        traceparent=current_traceparent() or request.headers.get("traceparent"),
    )
    return json_response(created, status=202, headers=headers)


async def start_job(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    headers = await api.limiter.take(user, route_template(request))
    started = await api.ctx.jobs.start(user, request.path_params["job_id"])
    if started.state == "enqueued":
        api.ctx.metrics.jobs_enqueued.labels(started.queue).inc()
    return json_response(started, status=202, headers=headers)


async def get_job(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    job = await api.ctx.jobs.get(user, request.path_params["job_id"])
    return json_response(job_view(job))


async def list_jobs(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    query = decode_query(request.query_params, ListJobsQuery)
    page = await api.ctx.jobs.list(
        user, limit=query.limit, cursor=given(query.cursor), status=given(query.status)
    )
    return json_response(
        JobList(jobs=[job_view(job) for job in page.jobs], next_cursor=page.next_cursor)
    )


async def cancel_job(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    headers = await api.limiter.take(user, route_template(request))
    job = await api.ctx.jobs.cancel(user, request.path_params["job_id"])
    return json_response(job_view(job), status=202, headers=headers)


async def get_output(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    download = await api.ctx.jobs.download(
        user, request.path_params["job_id"], request.path_params["step_id"]
    )
    if isinstance(download, Redirect):
        return RedirectResponse(download.url, status_code=307)
    return stream_response(download.stream, media_type=download.content_type)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not 1 <= len(key) <= _MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(
            f"Idempotency-Key must be 1..{_MAX_IDEMPOTENCY_KEY} characters",
            code="invalid_idempotency_key",
        )
    return key


_LIMITED = 429  # the mutating routes take a rate-limit token
_UNAUTHORIZED = 401  # every route identifies its caller first (not in PIXELFLOW_AUTH=none)
_JOB_ID_ERRORS = (_UNAUTHORIZED, 404, 503)

routes = [
    ApiRoute(
        "/v1/jobs",
        create_job,
        method="POST",
        spec=Spec(
            "Create a job",
            {202: CreateJobResponse},
            errors=(400, _UNAUTHORIZED, 409, 413, 415, _LIMITED, 503),
            request=CreateJobRequest,
            headers=(
                Header(
                    "Idempotency-Key",
                    "Replays with the same key and body return the same job for 24 h.",
                    {"type": "string", "minLength": 1, "maxLength": _MAX_IDEMPOTENCY_KEY},
                ),
                Header("traceparent", "W3C trace context, carried to the worker."),
            ),
        ),
    ),
    ApiRoute(
        "/v1/jobs",
        list_jobs,
        method="GET",
        spec=Spec(
            "List the caller's jobs, newest first",
            {200: JobList},
            errors=(400, _UNAUTHORIZED, 503),
            query=ListJobsQuery,
        ),
    ),
    ApiRoute(
        "/v1/jobs/{job_id}",
        get_job,
        method="GET",
        spec=Spec("Get a job", {200: JobView}, errors=_JOB_ID_ERRORS),
    ),
    ApiRoute(
        "/v1/jobs/{job_id}/start",
        start_job,
        method="POST",
        spec=Spec(
            "Verify the source and enqueue the job",
            {202: StartJobResponse},
            errors=(400, _UNAUTHORIZED, 404, 409, 413, _LIMITED, 503),
        ),
    ),
    ApiRoute(
        "/v1/jobs/{job_id}/cancel",
        cancel_job,
        method="POST",
        spec=Spec(
            "Cancel a job that has not finished",
            {202: JobView},
            errors=(_UNAUTHORIZED, 404, 409, _LIMITED, 503),
        ),
    ),
    ApiRoute(
        "/v1/jobs/{job_id}/outputs/{step_id}",
        get_output,
        method="GET",
        spec=Spec(
            "Download an output: a redirect to a presigned URL, or the bytes",
            {
                200: Raw("The output's bytes, in its format's media type.", "image/*"),
                307: Raw("Redirect to a presigned download URL (S3 storage)."),
            },
            errors=_JOB_ID_ERRORS,
        ),
    ),
]
