"""The embedded worker: consumes the in-process queue inside the ``serve`` process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pixelflow.adapters.queue.local import LocalQueue
from pixelflow.core.errors import PixelflowError
from pixelflow.core.models import JobTask
from pixelflow.runtime import AppContext, build_processor, build_reconciler, open_imaging
from pixelflow.services.processing import Processor
from pixelflow.services.reconciler import Reconciler

log = logging.getLogger(__name__)


class LocalWorker:
    def __init__(
        self,
        *,
        queue: LocalQueue,
        processor: Processor,
        reconciler: Reconciler,
        concurrency: int,
        reconcile_interval: float,
    ) -> None:
        self.queue = queue
        self.processor = processor
        self.reconciler = reconciler
        self.concurrency = concurrency
        self.reconcile_interval = reconcile_interval
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Pick up what a previous (possibly killed) process left, then start consuming."""
        recovered = await self.reconciler.recover_all_processing()
        queued = await self.reconciler.enqueue_all_queued()
        if recovered.recovered or recovered.failed or queued:
            log.info(
                "resuming: %d interrupted job(s) requeued, %d failed, %d queued job(s) enqueued",
                recovered.recovered,
                recovered.failed,
                queued,
            )
        self._tasks = [
            asyncio.create_task(self.queue.run(self._handle, concurrency=self.concurrency)),
            asyncio.create_task(self._reconcile_forever()),
        ]

    async def _handle(self, task: JobTask) -> None:
        attempt = await self.processor.process(task)
        if attempt.outcome == "retry":
            await self.queue.enqueue(task, delay=attempt.retry_in)

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_interval)
            try:
                await self.reconciler.run_once()
            except PixelflowError as exc:  # a dependency is down: expected, no traceback
                log.warning("reconciler pass failed: %s (%s)", exc.message, exc.code)
            except Exception:
                log.exception("reconciler pass failed")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []


async def start_embedded_worker(ctx: AppContext, stack: contextlib.AsyncExitStack) -> LocalWorker:
    """Start ``serve``'s in-process worker on the context's queue; it stops with ``stack``."""
    if not isinstance(ctx.queue, LocalQueue):
        raise RuntimeError("the embedded worker needs the in-process queue")
    imaging = await stack.enter_async_context(open_imaging(ctx.settings))
    worker = LocalWorker(
        queue=ctx.queue,
        processor=build_processor(ctx, imaging),
        reconciler=build_reconciler(ctx),
        concurrency=ctx.settings.worker_concurrency,
        reconcile_interval=ctx.settings.reconcile_interval,
    )
    await worker.start()
    stack.push_async_callback(worker.stop)
    return worker
