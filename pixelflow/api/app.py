"""The Starlette app factory. Resources live in the lifespan, never at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from pixelflow.api.auth import Authenticator, authenticator_for
from pixelflow.api.deps import ApiState
from pixelflow.api.errors import HANDLERS
from pixelflow.api.hosts import HostGuardMiddleware
from pixelflow.api.middleware import MetricsMiddleware, TracingMiddleware
from pixelflow.api.openapi import build_openapi
from pixelflow.api.ratelimit import RouteLimiter
from pixelflow.api.routes import docs, health, jobs, objects, usage, webhooks
from pixelflow.api.spec import ApiRoute, Raw, Spec
from pixelflow.config import Role, Settings
from pixelflow.console.pages import Console
from pixelflow.runtime import (
    AppContext,
    dependency_watch,
    open_context,
    open_context_when_reachable,
)
from pixelflow.telemetry import context as log_context
from pixelflow.telemetry.metrics import Metrics
from pixelflow.telemetry.tracing import Tracing

log = logging.getLogger(__name__)

# Runs once the app context is open; whatever it starts it stops through the stack, which
# unwinds (before the context closes) when the app shuts down.
StartupHook = Callable[[AppContext, contextlib.AsyncExitStack], Awaitable[object]]


def create_app(
    settings: Settings,
    *,
    on_startup: StartupHook | None = None,
    metrics: Metrics | None = None,
) -> Starlette:
    """The API. ``serve`` passes ``on_startup`` to run its embedded worker in-process: the
    entrypoint composes the worker, so this package never imports ``pixelflow.worker``.

    A separate metrics port is the entrypoint's to open (``telemetry.endpoint``), so a taken
    port fails before anything starts; with ``settings.metrics_on_api_port`` (``serve``'s
    default) ``/metrics`` is answered here instead, from the same registry as the worker's.
    """
    metrics = metrics or Metrics(role=settings.role.value)
    # Opened with the app context in the lifespan; the middleware reads it per request.
    tracing = Tracing()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            # Production waits out a dependency that is down at start-up, like any outage;
            # `serve`'s embedded pieces are files, whose failure is not an outage to wait out.
            production = settings.role is not Role.SERVE
            opener = open_context_when_reachable if production else open_context
            ctx = await stack.enter_async_context(opener(settings, metrics))
            tracing.use(ctx.tracing)
            stack.callback(tracing.use, Tracing())
            app.state.api = ApiState(
                ctx=ctx,
                auth=_LoggedAuthenticator(
                    authenticator_for(settings.auth, header=settings.user_id_header, keys=ctx.keys)
                ),
                limiter=RouteLimiter(
                    ctx.rate_limiter,
                    capacity=settings.rate_limit_capacity,
                    window=settings.rate_limit_window,
                    metrics=metrics,
                ),
            )
            if production:
                # Logs one line when a dependency goes away and one when it is back, and
                # exports pixelflow_dependency_up; /readyz still asks the dependencies itself.
                watching = asyncio.create_task(dependency_watch(ctx).watch_forever())
                stack.callback(watching.cancel)
            if on_startup is not None:
                await on_startup(ctx, stack)
            yield

    async def metrics_page(request: Request) -> Response:
        body, content_type = await metrics.exposition()
        return Response(body, headers={"Content-Type": content_type})

    exposition = ApiRoute(
        "/metrics",
        metrics_page,
        method="GET",
        spec=Spec(
            "Prometheus metrics of the API and the embedded worker (serve only)",
            {200: Raw("Prometheus text exposition format", "text/plain")},
        ),
    )
    extra = [exposition] if settings.metrics_on_api_port else []
    console = Console(settings)
    middleware = [
        Middleware(TracingMiddleware, tracing=tracing),
        Middleware(MetricsMiddleware, metrics=metrics),
    ]
    if settings.allowed_hosts is not None:
        # Inside the metrics middleware, so refused requests are counted too.
        middleware.append(Middleware(HostGuardMiddleware, allowed_hosts=settings.allowed_hosts))
    app = Starlette(
        routes=[
            *jobs.routes,
            *usage.routes,
            *webhooks.routes,
            *objects.routes,
            *health.routes,
            *docs.routes,
            *extra,
            # The web console's pages (PageRoutes: not in the OpenAPI document) and the files
            # they and /docs load, all from this origin.
            *console.routes(),
            Mount("/assets", app=StaticFiles(packages=[("pixelflow.console", "static")])),
        ],
        middleware=middleware,
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    # Starlette answers a path with a stray trailing slash with a bare 307 to the other spelling;
    # an API client is better served by the JSON 404 every other unknown path gets.
    app.router.redirect_slashes = False
    app.state.openapi = build_openapi(app.routes, bearer=settings.auth == "api_key")
    return app


class _LoggedAuthenticator:
    """Binds the caller's user id into the request's log context once it is known."""

    def __init__(self, inner: Authenticator) -> None:
        self.inner = inner

    async def user_id(self, request: Request) -> str:
        user = await self.inner.user_id(request)
        log_context.bind(user_id=user)
        return user
