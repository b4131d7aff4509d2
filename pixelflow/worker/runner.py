"""What every worker does, embedded (``serve``) or not (``pixelflow worker``): consume the queue
with the Processor, run the reconciler, watch the dependencies, and stop cleanly.

Written once so that both runners retry, reconcile and shut down the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pixelflow.adapters.queue.protocol import Handler, Queue
from pixelflow.core.errors import PixelflowError, Unavailable
from pixelflow.core.models import JobTask
from pixelflow.services.dependency_watch import DependencyWatch
from pixelflow.services.processing import Processor
from pixelflow.services.reconciler import Reconciler

log = logging.getLogger(__name__)


def job_handler(processor: Processor) -> Handler:
    """The queue handler: one attempt; a retry goes back to the queue with its backoff."""

    async def handle(task: JobTask) -> float | None:
        attempt = await processor.process(task)
        return attempt.retry_in if attempt.outcome == "retry" else None

    return handle


async def reconcile_forever(reconciler: Reconciler, interval: float) -> None:
    """Every worker runs this; each action is a compare-and-set, so running it in several
    workers at once does each recovery once. A pass that meets an outage is simply tried
    again next time (the dependency watch reports the outage, once)."""
    while True:
        try:
            await reconciler.run_once()
        except Unavailable as exc:
            log.debug("reconciler pass skipped: %s", exc.message)
        except PixelflowError as exc:  # expected, and says what it is: no traceback
            log.warning("reconciler pass failed: %s (%s)", exc.message, exc.code)
        except Exception:
            log.exception("reconciler pass failed")
        await asyncio.sleep(interval)


async def run_until_stopped(
    stop: asyncio.Event,
    *,
    queue: Queue,
    processor: Processor,
    reconciler: Reconciler,
    concurrency: int,
    reconcile_interval: float,
    grace: float,
    watch: DependencyWatch | None = None,
) -> None:
    """Consume until ``stop`` is set, then take no new job and give the running ones ``grace``
    seconds to finish; those still running are cancelled, which hands them back to the queue
    (``Processor`` releases a cancelled attempt's job)."""
    background = [asyncio.create_task(reconcile_forever(reconciler, reconcile_interval))]
    if watch is not None:
        background.append(asyncio.create_task(watch.watch_forever()))
    consuming = asyncio.create_task(queue.run(job_handler(processor), concurrency=concurrency))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if consuming.done():
            consuming.result()  # run() only ends when told to: surface why it did
            raise RuntimeError("the queue consumer stopped by itself")
        queue.stop_consuming()
        if grace > 0:
            await asyncio.wait({consuming}, timeout=grace)
    finally:
        for task in (consuming, stopping, *background):
            task.cancel()
        for task in (consuming, stopping, *background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
