"""The embedded worker: consumes the in-process queue inside the ``serve`` process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pixelflow.runtime import AppContext, build_processor, build_reconciler, open_imaging
from pixelflow.worker.runner import run_until_stopped

log = logging.getLogger(__name__)


async def start_embedded_worker(ctx: AppContext, stack: contextlib.AsyncExitStack) -> None:
    """Start ``serve``'s in-process worker on the context's queue; it stops with ``stack``.

    The queue forgets everything when the process stops, so the previous process's
    ``processing`` jobs are requeued and every ``queued`` job is enqueued first. Stopping
    hands the jobs in flight back at once (no grace: ``serve`` is one process, and uvicorn
    already waited for its requests)."""
    imaging = await stack.enter_async_context(open_imaging(ctx.settings))
    reconciler = build_reconciler(ctx)
    recovered = await reconciler.recover_all_processing()
    queued = await reconciler.enqueue_all_queued()
    if recovered.recovered or recovered.failed or queued:
        log.info(
            "resuming: %d interrupted job(s) requeued, %d failed, %d queued job(s) enqueued",
            recovered.recovered,
            recovered.failed,
            queued,
        )
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_until_stopped(
            stop,
            queue=ctx.queue,
            processor=build_processor(ctx, imaging),
            reconciler=reconciler,
            concurrency=ctx.settings.worker_concurrency,
            reconcile_interval=ctx.settings.reconcile_interval,
            grace=0,
        )
    )

    async def stop_worker() -> None:
        stop.set()
        await running

    stack.push_async_callback(stop_worker)
