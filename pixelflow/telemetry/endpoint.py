"""The metrics port: ``/metrics`` and, for a worker, ``/healthz`` and ``/readyz``.

One helper for every role. It runs on the process's own event loop (aiohttp), so a readiness
check is an ordinary coroutine and a scrape can refresh gauges read from a dependency.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
from aiohttp import web

from pixelflow.config import Address
from pixelflow.core.wire import HealthStatus
from pixelflow.telemetry.metrics import Metrics

Readiness = Callable[[], Awaitable[HealthStatus]]


class ListenError(Exception):
    """A listen address is taken or not ours to bind: say so in one line and exit 1."""


@contextlib.asynccontextmanager
async def metrics_endpoint(
    metrics: Metrics, address: Address, *, variable: str, readiness: Readiness | None = None
) -> AsyncIterator[int]:
    """Serve ``metrics`` on ``address`` until the block exits; yields the bound port."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics_handler(metrics))
    if readiness is not None:
        app.router.add_get("/healthz", _healthz)
        app.router.add_get("/readyz", _readyz_handler(readiness))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, address.host or None, address.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(
                f"{variable}: cannot listen on {address} ({exc.strerror or exc})"
            ) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        yield int(sockets[0].getsockname()[1]) if sockets else address.port
    finally:
        await runner.cleanup()


def _metrics_handler(metrics: Metrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        body, content_type = await metrics.exposition()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    return handle


async def _healthz(request: web.Request) -> web.Response:
    return _json(HealthStatus(status="ok"), 200)


def _readyz_handler(readiness: Readiness) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        report = await readiness()
        return _json(report, 200 if report.status == "ok" else 503)

    return handle


def _json(body: HealthStatus, status: int) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )
