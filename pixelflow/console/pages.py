"""The console's routes: each resolves the caller, checks CSRF on writes, calls one service
method and renders a template (a page, or a fragment the page's script swaps in)."""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from pixelflow.api.body import body_chunks, read_json_body
from pixelflow.api.deps import route_template, state
from pixelflow.api.errors import error_response, status_of
from pixelflow.api.render import json_response, stream_response
from pixelflow.api.spec import PageRoute
from pixelflow.config import Settings
from pixelflow.console import views
from pixelflow.console.http import (
    CSRF_FIELD,
    CSRF_HEADER,
    html,
    read_form,
    template_environment,
    with_headers,
)
from pixelflow.console.identity import Caller, ConsoleIdentity
from pixelflow.core.clock import utc_now
from pixelflow.core.errors import InvalidInput, PixelflowError, Unauthorized
from pixelflow.core.states import JobStatus
from pixelflow.core.usage import month_start, next_month_start
from pixelflow.core.validation import decode_create_request, decode_query, given
from pixelflow.core.wire import ListJobsQuery
from pixelflow.services.sessions import csrf_ok

OUTPUT_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"

# page: an HTML page (no session → the sign-in page); fragment: HTML swapped in by the page's
# script; json: the new-job form's calls (answers are ``{"error", "code"}`` on failure).
Kind = Literal["page", "fragment", "json"]
Handler = Callable[[Request, Caller], Awaitable[Response]]


class Console:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signs_in = settings.auth == "api_key"
        self.identity = ConsoleIdentity(mode=settings.auth)
        self.env = template_environment()
        # Secure-when-HTTPS: the public URL is what browsers use (a TLS proxy in front).
        self.secure = settings.public_url.startswith("https://")

    def routes(self) -> list[BaseRoute]:
        def route(
            path: str, handler: Handler, kind: Kind = "page", method: str = "GET"
        ) -> PageRoute:
            return PageRoute(path, self._endpoint(handler, kind), methods=(method,))

        return [
            route("/console", self.jobs),
            route("/console/rows", self.job_rows, "fragment"),
            route("/console/new", self.new_form),
            route("/console/new", self.create, "json", "POST"),
            route("/console/usage", self.usage),
            PageRoute("/console/login", self.login_form),
            PageRoute("/console/login", self.login, methods=("POST",)),
            route("/console/logout", self.logout, "page", "POST"),
            route("/console/jobs/{job_id}", self.job),
            route("/console/jobs/{job_id}/panel", self.job_panel, "fragment"),
            route("/console/jobs/{job_id}/outputs/{step_id}", self.output, "fragment"),
            route("/console/jobs/{job_id}/source", self.upload, "json", "PUT"),
            route("/console/jobs/{job_id}/start", self.start, "page", "POST"),
            route("/console/jobs/{job_id}/cancel", self.cancel, "page", "POST"),
        ]

    # -- the wrapper every route goes through ---------------------------------------------

    def _endpoint(self, handler: Handler, kind: Kind) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            caller: Caller | None = None
            try:
                caller = await self.identity.caller(request)
                if caller.user_id is None:
                    if kind == "page" and request.method == "GET":
                        target = request.url.path + (
                            f"?{request.url.query}" if request.url.query else ""
                        )
                        return self._redirect(f"/console/login?next={quote(target)}", caller)
                    raise Unauthorized("sign in first", code="unauthorized")
                if request.method != "GET":
                    await self._check_csrf(request, caller)
                return with_headers(await handler(request, caller), caller, secure=self.secure)
            except PixelflowError as exc:
                return self._error(request, caller, exc, kind)

        return endpoint

    async def _check_csrf(self, request: Request, caller: Caller) -> None:
        presented = request.headers.get(CSRF_HEADER)
        content_type = request.headers.get("content-type", "")
        if presented is None and content_type.startswith("application/x-www-form-urlencoded"):
            request.state.form = await read_form(request)
            presented = request.state.form.get(CSRF_FIELD)
        if not csrf_ok(caller.session, presented):
            raise CsrfRefused("the form expired or did not come from this console; reload it")

    def _error(
        self, request: Request, caller: Caller | None, exc: PixelflowError, kind: Kind
    ) -> Response:
        status = 403 if isinstance(exc, CsrfRefused) else status_of(exc)
        message, code = (
            (exc.message, exc.code) if status != 500 else ("internal error", "internal_error")
        )
        if kind == "json":
            return with_headers(error_response(status, code, message), caller, secure=self.secure)
        template = "error.html" if kind == "page" else "_error.html"
        context = self._context(caller, status=status, message=message, code=code)
        return html(self.env, template, context, caller=caller, secure=self.secure, status=status)

    def _context(self, caller: Caller | None, **extra: Any) -> dict[str, Any]:
        return {
            "user_id": caller.user_id if caller else None,
            "csrf_token": caller.session.csrf_token if caller else "",
            "csrf_field": CSRF_FIELD,
            "signs_in": self.signs_in,
            **extra,
        }

    def _page(self, caller: Caller, template: str, **extra: Any) -> Response:
        return html(
            self.env, template, self._context(caller, **extra), caller=None, secure=self.secure
        )

    def _redirect(self, url: str, caller: Caller | None = None) -> Response:
        return with_headers(RedirectResponse(url, status_code=303), caller, secure=self.secure)

    # -- jobs ------------------------------------------------------------------------------

    async def _job_list(self, request: Request, caller: Caller) -> dict[str, Any]:
        query = decode_query(request.query_params, ListJobsQuery)
        assert caller.user_id is not None
        page = await state(request).ctx.jobs.list(
            caller.user_id,
            limit=query.limit,
            cursor=given(query.cursor),
            status=given(query.status),
        )
        now = utc_now()
        status = given(query.status)
        filters = {"status": status.value} if status else {}
        return {
            "jobs": page.jobs,
            "durations": {job.id: views.duration_seconds(job, now) for job in page.jobs},
            "live": any(views.is_running(job) for job in page.jobs),
            "status": status.value if status else "",
            "statuses": [s.value for s in JobStatus],
            "next_url": (
                "/console?" + urlencode({**filters, "cursor": page.next_cursor})
                if page.next_cursor
                else None
            ),
            "first_url": "/console?" + urlencode(filters) if query.cursor else None,
            "rows_url": "/console/rows?" + urlencode(dict(request.query_params)),
        }

    async def jobs(self, request: Request, caller: Caller) -> Response:
        return self._page(caller, "jobs.html", nav="jobs", **await self._job_list(request, caller))

    async def job_rows(self, request: Request, caller: Caller) -> Response:
        return self._page(caller, "_jobs_table.html", **await self._job_list(request, caller))

    async def _job_context(self, request: Request, caller: Caller) -> dict[str, Any]:
        assert caller.user_id is not None
        jobs = state(request).ctx.jobs
        job = await jobs.get(caller.user_id, request.path_params["job_id"])
        return {
            "job": job,
            "deliveries": await jobs.webhook_deliveries(caller.user_id, job.id),
            "tree": views.pipeline_tree(job.pipeline),
            "previews": {o.step_id: views.preview_size(o.width, o.height) for o in job.outputs},
            "duration": views.duration_seconds(job, utc_now()),
            # Live while the job runs or its webhook is still being delivered.
            "live": views.is_running(job)
            or (job.webhook is not None and job.webhook.state == "pending"),
            "cancelable": job.status in {JobStatus.CREATED, JobStatus.QUEUED},
        }

    async def job(self, request: Request, caller: Caller) -> Response:
        return self._page(
            caller, "job.html", nav="jobs", **await self._job_context(request, caller)
        )

    async def job_panel(self, request: Request, caller: Caller) -> Response:
        return self._page(caller, "_job_panel.html", **await self._job_context(request, caller))

    async def output(self, request: Request, caller: Caller) -> Response:
        assert caller.user_id is not None
        job_id, step_id = request.path_params["job_id"], request.path_params["step_id"]
        body = await state(request).ctx.jobs.open_output(caller.user_id, job_id, step_id)
        response = stream_response(body.stream, media_type=body.content_type)
        response.headers["Cache-Control"] = "private, max-age=300"
        # Opened on its own, an image is shown by the browser's viewer, which styles it inline;
        # it runs nothing and loads nothing else.
        response.headers["Content-Security-Policy"] = OUTPUT_CSP
        if request.query_params.get("download") == "1":
            extension = mimetypes.guess_extension(body.content_type) or ""
            response.headers["Content-Disposition"] = (
                f'attachment; filename="{job_id}-{step_id}{extension}"'
            )
        return response

    async def cancel(self, request: Request, caller: Caller) -> Response:
        api = state(request)
        assert caller.user_id is not None
        await api.limiter.take(caller.user_id, route_template(request))
        job = await api.ctx.jobs.cancel(caller.user_id, request.path_params["job_id"])
        return self._redirect(f"/console/jobs/{job.id}")

    async def start(self, request: Request, caller: Caller) -> Response:
        api = state(request)
        assert caller.user_id is not None
        await api.limiter.take(caller.user_id, route_template(request))
        started = await api.ctx.jobs.start(caller.user_id, request.path_params["job_id"])
        if started.state == "enqueued":
            api.ctx.metrics.jobs_enqueued.labels(started.queue).inc()
        return self._redirect(f"/console/jobs/{started.job_id}")

    # -- a new job -------------------------------------------------------------------------

    async def new_form(self, request: Request, caller: Caller) -> Response:
        presets = [
            (name, label, views.preset_json(name)) for name, (label, _) in views.PRESETS.items()
        ]
        return self._page(
            caller,
            "new.html",
            nav="new",
            presets=presets,
            pipeline=views.preset_json("thumbnail"),
            max_source_bytes=self.settings.max_source_bytes,
        )

    async def create(self, request: Request, caller: Caller) -> Response:
        """The create-job body of the API (``source_type`` ``s3_presigned``), decoded and
        validated by the same code, so its 400 names the step as the API's does."""
        api = state(request)
        assert caller.user_id is not None
        await api.limiter.take(caller.user_id, route_template(request))
        body = await read_json_body(request, limit=api.ctx.settings.max_body_bytes)
        job_request = decode_create_request(body)
        if job_request.source_type != "s3_presigned":
            raise InvalidInput(
                "the console uploads the source: source_type must be s3_presigned",
                code="invalid_field",
            )
        created = await api.ctx.jobs.create(caller.user_id, job_request)
        job_id = created.job_id
        return json_response(
            {
                "job_id": job_id,
                "upload_url": f"/console/jobs/{job_id}/source",
                "start_url": f"/console/jobs/{job_id}/start",
                "page_url": f"/console/jobs/{job_id}",
            },
            status=201,
        )

    async def upload(self, request: Request, caller: Caller) -> Response:
        ctx = state(request).ctx
        assert caller.user_id is not None
        chunks = body_chunks(request, limit=ctx.settings.max_source_bytes)
        written = await ctx.jobs.upload_source(
            caller.user_id, request.path_params["job_id"], chunks
        )
        return json_response({"bytes": written})

    # -- usage -----------------------------------------------------------------------------

    async def usage(self, request: Request, caller: Caller) -> Response:
        """The month's usage per day (the service behind ``GET /v1/usage?group=day``)."""
        assert caller.user_id is not None
        metric = request.query_params.get("metric") or "jobs"
        if metric not in views.USAGE_METRICS:
            raise InvalidInput(
                f"metric must be one of {', '.join(views.USAGE_METRICS)}", code="invalid_parameter"
            )
        month = request.query_params.get("month")
        start = month_start(views.parse_month(month)) if month else None
        end = next_month_start(start.date()) if start else None
        report = await state(request).ctx.usage.report(
            caller.user_id, start=start, end=end, by_day=True
        )
        days = [(day.date, int(getattr(day, metric))) for day in report.days or []]
        return self._page(
            caller,
            "usage.html",
            nav="usage",
            report=report,
            chart=views.usage_chart(days, views.describe_metric(metric)),
            metric=metric,
            metric_label=views.USAGE_METRICS[metric],
            metrics=list(views.USAGE_METRICS.items()),
            month=report.start.strftime("%Y-%m"),
        )

    # -- sign-in (api_key mode) ------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if not self.signs_in:
            return self._redirect("/console")
        caller = await self.identity.caller(request)
        if caller.user_id is not None:
            return self._redirect(_local(request.query_params.get("next")), caller)
        return self._login_page(caller, request.query_params.get("next", ""), error=None)

    def _login_page(self, caller: Caller, next_url: str, *, error: str | None) -> Response:
        context = self._context(caller, nav="login", next=next_url, error=error)
        status = 401 if error else 200
        return html(
            self.env, "login.html", context, caller=caller, secure=self.secure, status=status
        )

    async def login(self, request: Request) -> Response:
        if not self.signs_in:
            return self._redirect("/console")
        caller: Caller | None = None
        try:
            caller = await self.identity.caller(request)
            await self._check_csrf(request, caller)
            form: dict[str, str] = request.state.form
            api = state(request)
            client = request.client.host if request.client else "unknown"
            await api.limiter.take(f"console-login:{client}", route_template(request))
            signed_in = await self.identity.sign_in(
                request, caller, form.get("api_key", "").strip()
            )
            if signed_in is None:
                return self._login_page(
                    caller, form.get("next", ""), error="That API key is not valid."
                )
            return self._redirect(_local(form.get("next")), signed_in)
        except PixelflowError as exc:
            return self._error(request, caller, exc, "page")

    async def logout(self, request: Request, caller: Caller) -> Response:
        fresh = await self.identity.sign_out(request, caller)
        return self._redirect("/console/login" if self.signs_in else "/console", fresh)


class CsrfRefused(PixelflowError):
    """A write without this session's CSRF token (HTTP 403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="csrf_failed")


def _local(target: str | None) -> str:
    """Where to go after sign-in: a console path only (never another site: no open redirect)."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console"
