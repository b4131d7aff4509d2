"""``pixelflow worker``: the arq worker of the production data plane.

arq only delivers job ids; the Processor (shared with the embedded worker) does the work, and
the store decides retries: a transient failure is handed back to arq as ``Retry`` with the
store's backoff, so the job keeps its id and runs again on any worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

from pixelflow.adapters.queue.arq import PROCESS_JOB_FUNCTION, handle_payload, worker_settings
from pixelflow.config import Settings
from pixelflow.core.errors import PixelflowError
from pixelflow.core.models import JobTask
from pixelflow.runtime import (
    build_processor,
    build_reconciler,
    dependency_checks,
    open_context,
    open_imaging,
    run_webhook_delivery,
)
from pixelflow.services.health import readiness
from pixelflow.services.reconciler import Reconciler
from pixelflow.telemetry.endpoint import metrics_endpoint
from pixelflow.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# arq must never time a job out before the Processor does: it would re-run a live attempt.
_ARQ_TIMEOUT_MARGIN = 30.0
# In-flight jobs get this long to finish on SIGTERM before they are handed back to the queue.
_SHUTDOWN_GRACE = 25


def run_worker(settings: Settings) -> int:
    asyncio.run(serve_worker(settings))
    return 0


async def serve_worker(settings: Settings) -> None:
    assert settings.redis_url is not None, "config requires PIXELFLOW_REDIS_URL for workers"
    metrics = Metrics(role="worker")
    async with contextlib.AsyncExitStack() as stack:
        ctx = await stack.enter_async_context(open_context(settings, metrics))
        imaging = await stack.enter_async_context(open_imaging(settings))
        processor = build_processor(ctx, imaging)
        # Webhooks go out from a loop of their own, never from an image-processing attempt.
        await stack.enter_async_context(run_webhook_delivery(ctx))
        if settings.worker_metrics_addr is not None:
            # The worker's probes live on its metrics port: /readyz asks its dependencies.
            checks = dependency_checks(ctx)
            await stack.enter_async_context(
                metrics_endpoint(
                    metrics,
                    settings.worker_metrics_addr,
                    variable="WORKER_METRICS_ADDR",
                    readiness=lambda: readiness(checks),
                )
            )

        async def handle(task: JobTask) -> None:
            attempt = await processor.process(task)
            if attempt.outcome == "retry":
                await ctx.queue.enqueue(task, delay=attempt.retry_in)

        async def process_job(arq_ctx: dict[str, Any], payload: bytes) -> None:
            await handle_payload(handle, payload)

        worker = Worker(
            functions=[
                func(
                    process_job,  # type: ignore[arg-type]  # arq types ctx as a bare Protocol
                    name=PROCESS_JOB_FUNCTION,
                    timeout=settings.worker_job_timeout + _ARQ_TIMEOUT_MARGIN,
                )
            ],
            redis_settings=RedisSettings.from_dsn(settings.redis_url),
            max_jobs=settings.worker_concurrency,
            handle_signals=True,
            job_completion_wait=_SHUTDOWN_GRACE,
            poll_delay=0.2,
            **worker_settings(name=settings.queue_name),
        )
        reconciler = asyncio.create_task(
            _reconcile_forever(build_reconciler(ctx), settings.reconcile_interval)
        )
        log.info(
            "worker consuming queue %r (concurrency %d, %d job(s) in libvips at once)",
            settings.queue_name,
            settings.worker_concurrency,
            settings.worker_max_active_jobs,
        )
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await worker.async_run()
        finally:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler
            with contextlib.suppress(Exception):
                await worker.close()
        log.info("worker stopped")


async def _reconcile_forever(reconciler: Reconciler, interval: float) -> None:
    """Every worker runs this; each action is a compare-and-set, so running it in several
    workers at once does each recovery once."""
    while True:
        try:
            await reconciler.run_once()
        except PixelflowError as exc:  # a dependency is down: expected, no traceback
            log.warning("reconciler pass failed: %s (%s)", exc.message, exc.code)
        except Exception:
            log.exception("reconciler pass failed")
        await asyncio.sleep(interval)
