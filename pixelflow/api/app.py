"""The Starlette app factory. Resources live in the lifespan, never at import time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware

from pixelflow.api.auth import authenticator_for
from pixelflow.api.deps import ApiState
from pixelflow.api.errors import HANDLERS
from pixelflow.api.middleware import MetricsMiddleware
from pixelflow.api.openapi import build_openapi
from pixelflow.api.ratelimit import RouteLimiter
from pixelflow.api.routes import docs, health, jobs, objects, usage, webhooks
from pixelflow.config import Settings
from pixelflow.runtime import AppContext, open_context
from pixelflow.telemetry.metrics import Metrics, MetricsServer

log = logging.getLogger(__name__)

# Runs once the app context is open; whatever it starts it stops through the stack, which
# unwinds (before the context closes) when the app shuts down.
StartupHook = Callable[[AppContext, contextlib.AsyncExitStack], Awaitable[object]]


def create_app(settings: Settings, *, on_startup: StartupHook | None = None) -> Starlette:
    """The API. ``serve`` passes ``on_startup`` to run its embedded worker in-process: the
    entrypoint composes the worker, so this package never imports ``pixelflow.worker``."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            ctx = await stack.enter_async_context(open_context(settings, metrics))
            app.state.api = ApiState(
                ctx=ctx,
                auth=authenticator_for(
                    settings.auth, header=settings.user_id_header, keys=ctx.keys
                ),
                limiter=RouteLimiter(
                    ctx.rate_limiter,
                    capacity=settings.rate_limit_capacity,
                    window=settings.rate_limit_window,
                    metrics=metrics,
                ),
            )
            if settings.api_metrics_addr is not None:
                server = MetricsServer.start(
                    metrics, settings.api_metrics_addr, variable="PIXELFLOW_API_METRICS_ADDR"
                )
                stack.callback(server.close)
            if on_startup is not None:
                await on_startup(ctx, stack)
            yield

    app = Starlette(
        routes=[
            *jobs.routes,
            *usage.routes,
            *webhooks.routes,
            *objects.routes,
            *health.routes,
            *docs.routes,
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    # Starlette answers a path with a stray trailing slash with a bare 307 to the other spelling;
    # an API client is better served by the JSON 404 every other unknown path gets.
    app.router.redirect_slashes = False
    app.state.openapi = build_openapi(app.routes)
    return app
