"""Liveness (no dependency checks) and readiness (database, queue, storage)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from pixelflow.api.deps import state
from pixelflow.api.render import json_response
from pixelflow.api.spec import ApiRoute, Spec
from pixelflow.core.errors import PixelflowError
from pixelflow.core.wire import HealthStatus

_CHECK_TIMEOUT = 3.0


async def healthz(request: Request) -> Response:
    return json_response(HealthStatus(status="ok"))


async def readyz(request: Request) -> Response:
    ctx = state(request).ctx
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": ctx.store.ping,
        "queue": ctx.queue.ping,
        "storage": ctx.storage.ping,
    }
    results = await asyncio.gather(*(_check(ping) for ping in checks.values()))
    report = dict(zip(checks, results, strict=True))
    failing = [name for name, result in report.items() if result != "ok"]
    if not failing:
        return json_response(HealthStatus(status="ok", checks=report))
    return json_response(
        HealthStatus(
            status="unavailable",
            checks=report,
            error=f"not ready: {', '.join(failing)} unavailable",
            code="not_ready",
        ),
        status=503,
    )


async def _check(ping: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(ping(), timeout=_CHECK_TIMEOUT)
    except (PixelflowError, TimeoutError, OSError):
        return "unavailable"
    return "ok"


routes = [
    ApiRoute("/healthz", healthz, method="GET", spec=Spec("Liveness", {200: HealthStatus})),
    ApiRoute(
        "/readyz",
        readyz,
        method="GET",
        spec=Spec(
            "Readiness of database, queue and storage",
            # Not ready is a HealthStatus too: which checks fail, with error and code set.
            {200: HealthStatus, 503: HealthStatus},
        ),
    ),
]
