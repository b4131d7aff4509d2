"""Readiness: whether the dependencies a process needs answer, each within a bound.

Shared by the API's ``/readyz`` and the worker's (on its metrics port).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from pixelflow.core.errors import PixelflowError
from pixelflow.core.wire import HealthStatus

CHECK_TIMEOUT = 3.0

Ping = Callable[[], Awaitable[None]]


async def readiness(checks: Mapping[str, Ping]) -> HealthStatus:
    results = await asyncio.gather(*(_check(ping) for ping in checks.values()))
    report = dict(zip(checks, results, strict=True))
    failing = [name for name, result in report.items() if result != "ok"]
    if not failing:
        return HealthStatus(status="ok", checks=report)
    return HealthStatus(
        status="unavailable",
        checks=report,
        error=f"not ready: {', '.join(failing)} unavailable",
        code="not_ready",
    )


async def _check(ping: Ping) -> str:
    try:
        await asyncio.wait_for(ping(), timeout=CHECK_TIMEOUT)
    except (PixelflowError, TimeoutError, OSError):
        return "unavailable"
    return "ok"
