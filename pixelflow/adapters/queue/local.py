"""The embedded queue: an in-process asyncio dispatcher.

Nothing here survives a restart, and nothing needs to: the runtime re-enqueues the ``queued`` jobs
it finds in the store when it starts.

A job id is *waiting* from ``enqueue`` until a handler picks it up (delayed tasks included) and
*running* while its handler runs. ``enqueue`` refuses an id that is waiting, but accepts one that is
only running: a task enqueued while its job runs (a handler returning a retry delay, or the
reconciler) is held back until the running handler returns, so one job never runs twice at once.
"""

from __future__ import annotations

import asyncio
import logging

from pixelflow.adapters.queue.protocol import Handler
from pixelflow.core.errors import QueueUnavailable
from pixelflow.core.models import JobTask

logger = logging.getLogger(__name__)


class LocalQueue:
    def __init__(self, name: str = "default") -> None:
        self.name = name
        # ``None`` wakes the consumer up when the queue is closed.
        self._ready: asyncio.Queue[JobTask | None] = asyncio.Queue()
        self._waiting: set[str] = set()
        self._running: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Tasks picked up while their job was still running, released when it returns.
        self._held: dict[str, JobTask] = {}
        self._consuming = False
        self._stopping = False
        self._closed = False

    async def enqueue(self, task: JobTask, *, delay: float = 0.0) -> bool:
        if self._closed:
            raise QueueUnavailable("the queue is closed")
        # No await from here on: the check and the claim are atomic on the event loop.
        if task.job_id in self._waiting:
            return False
        self._waiting.add(task.job_id)
        if delay > 0:
            loop = asyncio.get_running_loop()
            self._timers[task.job_id] = loop.call_later(delay, self._release_delayed, task)
        else:
            self._ready.put_nowait(task)
        return True

    async def is_pending(self, job_id: str) -> bool:
        return job_id in self._waiting or job_id in self._running

    async def release(self, job_id: str) -> None:
        """Nothing to drop: consumers live in this process, and a dead process takes its
        claims with it."""

    async def depth(self) -> int:
        return len(self._waiting | self._running | set(self._held))

    async def ping(self) -> None:
        if self._closed:
            raise QueueUnavailable("the queue is closed")

    async def close(self) -> None:
        """Stop taking tasks: ``run()`` returns once its running handlers have returned.

        Waiting and delayed tasks are dropped; the store still has their jobs as ``queued``.
        """
        if self._closed:
            return
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._waiting.clear()
        self._held.clear()
        self._ready.put_nowait(None)

    def stop_consuming(self) -> None:
        self._stopping = True
        self._ready.put_nowait(None)

    async def run(self, handler: Handler, *, concurrency: int) -> None:
        """Hand tasks to ``handler``, at most ``concurrency`` at once, until closed, stopped
        (``stop_consuming``) or cancelled.

        A handler's exception is logged and does not stop the consumer. A handler that returns
        a delay gets its task again after it. Cancelling ``run()`` cancels the running handlers.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self._consuming:
            raise RuntimeError("this queue already has a consumer")
        self._consuming = True
        self._stopping = False
        slots = asyncio.Semaphore(concurrency)
        try:
            async with asyncio.TaskGroup() as handlers:
                while True:
                    await slots.acquire()
                    task = await self._ready.get()
                    if task is None or self._stopping:
                        if task is not None:
                            self._ready.put_nowait(task)  # left for a later consumer
                        break
                    if task.job_id not in self._waiting:
                        # Dropped by close() while it sat in the queue.
                        slots.release()
                    elif task.job_id in self._running:
                        self._held[task.job_id] = task
                        slots.release()
                    else:
                        self._waiting.discard(task.job_id)
                        self._running.add(task.job_id)
                        handlers.create_task(self._execute(handler, task, slots))
        finally:
            self._consuming = False

    async def _execute(self, handler: Handler, task: JobTask, slots: asyncio.Semaphore) -> None:
        try:
            retry_in = await handler(task)
            if retry_in is not None:
                # Accepted while the job runs, held back until this handler returns (below).
                await self.enqueue(task, delay=retry_in)
        except QueueUnavailable:
            pass  # closed meanwhile: the store still has the job as queued
        except Exception:
            logger.exception("queue %s: handler failed for job %s", self.name, task.job_id)
        finally:
            self._running.discard(task.job_id)
            slots.release()
            held = self._held.pop(task.job_id, None)
            if held is not None:
                self._ready.put_nowait(held)

    def _release_delayed(self, task: JobTask) -> None:
        del self._timers[task.job_id]
        self._ready.put_nowait(task)
