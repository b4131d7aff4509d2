"""``pixelflow worker``: the production data plane.

The queue (arq on Redis, behind the Queue Protocol) only delivers job ids; the Processor (shared
with the embedded worker) does the work, and the store decides retries.

A worker exits only on SIGTERM/SIGINT or a configuration error. A dependency that is down at
start-up is waited for; one that goes away later is ridden out (the queue consumer, the
reconciler and the database pool all reconnect by themselves), reported once in the log and
on the metrics port (``/readyz`` and ``pixelflow_dependency_up``) until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from pixelflow.config import Settings
from pixelflow.core.wire import HealthStatus
from pixelflow.gc_tuning import settle_after_startup
from pixelflow.runtime import (
    AppContext,
    build_processor,
    build_reconciler,
    dependency_checks,
    dependency_watch,
    open_context_when_reachable,
    open_imaging,
    run_webhook_delivery,
)
from pixelflow.services.readiness import readiness
from pixelflow.telemetry.endpoint import metrics_endpoint
from pixelflow.telemetry.metrics import Metrics
from pixelflow.worker.runner import run_until_stopped

log = logging.getLogger(__name__)

_STARTING = HealthStatus(
    status="unavailable",
    error="not ready: waiting for the dependencies at start-up",
    code="not_ready",
)


def run_worker(settings: Settings) -> int:
    asyncio.run(serve_worker(settings))
    return 0


async def serve_worker(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, stop, signum, settings.worker_shutdown_grace)
    metrics = Metrics(role="worker")
    opened: list[AppContext] = []  # the context, once its dependencies answered

    async def ready() -> HealthStatus:
        # The worker's probes live on its metrics port: /readyz asks its dependencies.
        return await readiness(dependency_checks(opened[0])) if opened else _STARTING

    async with contextlib.AsyncExitStack() as stack:
        if settings.worker_metrics_addr is not None:
            await stack.enter_async_context(
                metrics_endpoint(
                    metrics,
                    settings.worker_metrics_addr,
                    variable="WORKER_METRICS_ADDR",
                    readiness=ready,
                )
            )
        opening = asyncio.create_task(
            stack.enter_async_context(open_context_when_reachable(settings, metrics))
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not opening.done():
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opening
            log.info("worker stopped before its dependencies were reachable")
            return
        ctx = opening.result()
        imaging = await stack.enter_async_context(open_imaging(settings))
        processor = build_processor(ctx, imaging)
        # Webhooks go out from a loop of their own, never from an image-processing attempt.
        await stack.enter_async_context(run_webhook_delivery(ctx))
        opened.append(ctx)
        settle_after_startup()
        log.info(
            "worker consuming queue %r (concurrency %d, %d job(s) in libvips at once)",
            settings.queue_name,
            settings.worker_concurrency,
            settings.worker_max_active_jobs,
        )
        await run_until_stopped(
            stop,
            queue=ctx.queue,
            processor=processor,
            reconciler=build_reconciler(ctx),
            concurrency=settings.worker_concurrency,
            reconcile_interval=settings.reconcile_interval,
            grace=settings.worker_shutdown_grace,
            watch=dependency_watch(ctx),
        )
    log.info("worker stopped")


def _on_signal(stop: asyncio.Event, signum: signal.Signals, grace: float) -> None:
    if not stop.is_set():
        log.info(
            "%s: taking no new jobs; jobs still running after %g s are handed back",
            signum.name,
            grace,
        )
    stop.set()
