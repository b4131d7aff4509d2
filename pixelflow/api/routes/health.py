"""Liveness (no dependency checks) and readiness (database, queue, storage)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pixelflow.api.deps import state
from pixelflow.api.render import json_response
from pixelflow.api.spec import ApiRoute, Spec
from pixelflow.core.wire import HealthStatus
from pixelflow.runtime import dependency_checks
from pixelflow.services.readiness import readiness


async def healthz(request: Request) -> Response:
    return json_response(HealthStatus(status="ok"))


async def readyz(request: Request) -> Response:
    report = await readiness(dependency_checks(state(request).ctx))
    return json_response(report, status=200 if report.status == "ok" else 503)


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
