"""The Starlette app factory. Resources live in the lifespan, never at import time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from pixelflow.api.auth import authenticator_for
from pixelflow.api.deps import ApiState
from pixelflow.api.errors import HANDLERS
from pixelflow.api.middleware import MetricsMiddleware
from pixelflow.api.openapi import build_openapi
from pixelflow.api.ratelimit import RouteLimiter
from pixelflow.api.routes import docs, health, jobs, objects
from pixelflow.config import Settings
from pixelflow.runtime import open_context
from pixelflow.telemetry.metrics import Metrics, MetricsServer
from pixelflow.worker.local import start_embedded_worker

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, embedded_worker: bool = False) -> Starlette:
    """The API; with ``embedded_worker`` (``serve``) it also processes jobs in-process."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            ctx = await stack.enter_async_context(open_context(settings, metrics))
            app.state.api = ApiState(
                ctx=ctx,
                auth=authenticator_for(settings.auth, settings.user_id_header),
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
            if embedded_worker:
                await start_embedded_worker(ctx, stack)
                log.info(
                    "embedded mode: data in %s; local_file sources under %s; docs at %s/docs",
                    settings.data_dir,
                    settings.local_source_root,
                    settings.public_url,
                )
            yield

    app = Starlette(
        routes=[*jobs.routes, *objects.routes, *health.routes, *docs.routes],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.openapi = build_openapi()
    return app
