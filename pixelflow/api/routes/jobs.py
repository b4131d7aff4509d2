"""/v1/jobs: each handler parses, calls one service method, and renders."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pixelflow.api.body import read_json_body
from pixelflow.api.deps import route_template, state
from pixelflow.api.render import job_view, json_response
from pixelflow.core.errors import InvalidInput
from pixelflow.core.states import JobStatus
from pixelflow.core.validation import decode_create_request
from pixelflow.core.wire import JobList

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
        traceparent=request.headers.get("traceparent"),
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
    job = await api.ctx.jobs.get(user, request.path_params["job_id"], with_usage=True)
    return json_response(job_view(job))


async def list_jobs(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    query = request.query_params
    unknown = set(query) - {"limit", "cursor", "status"}
    if unknown:
        raise InvalidInput(
            f"unknown query parameter {sorted(unknown)[0]!r}", code="unknown_parameter"
        )
    page = await api.ctx.jobs.list(
        user,
        limit=_int_param(query.get("limit"), "limit", default=20),
        cursor=query.get("cursor") or None,
        status=_status_param(query.get("status")),
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
    output = await api.ctx.jobs.output(
        user, request.path_params["job_id"], request.path_params["step_id"]
    )
    storage = api.ctx.storage
    url = await storage.download_url(output.object_key, expires_in=api.ctx.settings.presign_expiry)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    data = await storage.get(output.object_key)
    return Response(data, media_type=output.content_type)


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


def _int_param(raw: str | None, name: str, *, default: int) -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", code="invalid_parameter") from None


def _status_param(raw: str | None) -> JobStatus | None:
    if not raw:
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        choices = ", ".join(s.value for s in JobStatus)
        raise InvalidInput(f"status must be one of {choices}", code="invalid_parameter") from None


routes = [
    Route("/v1/jobs", create_job, methods=["POST"]),
    Route("/v1/jobs", list_jobs, methods=["GET"]),
    Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/v1/jobs/{job_id}/start", start_job, methods=["POST"]),
    Route("/v1/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/v1/jobs/{job_id}/outputs/{step_id}", get_output, methods=["GET"]),
]
