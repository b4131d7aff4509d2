"""The job queue carries only ids; anything lost from it is re-derived from the store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from pixelflow.core.models import JobTask

# A consumer's handler: None when the task is done with, or a delay in seconds after which the
# queue delivers the same task again (a retry with backoff, keeping the job id).
Handler = Callable[[JobTask], Awaitable[float | None]]


class Queue(Protocol):
    name: str

    async def enqueue(self, task: JobTask, *, delay: float = 0.0) -> bool:
        """Enqueue with the job id as the task id: True if enqueued now, False if a task for
        this job is already waiting (so a job never waits in the queue twice).

        While the job's task is *running*, the implementations differ, and both are safe:
        ``ArqQueue`` answers False (arq keeps the job's key until it ends), ``LocalQueue``
        accepts the task and holds it back until the running handler returns. Neither ever runs
        one job twice at once. A handler wanting its own task again returns a delay instead
        (see ``Handler``).

        Raises ``QueueUnavailable`` when the queue cannot take it (backend down, queue closed):
        nothing is enqueued then, and the caller decides (``start`` leaves the job to the
        reconciler, which enqueues every ``queued`` job the queue does not know about)."""
        ...

    async def is_pending(self, job_id: str) -> bool:
        """Whether a task for this job is waiting or running (the reconciler's question)."""
        ...

    async def release(self, job_id: str) -> None:
        """Drop any claim a (dead) consumer still holds on this job's task, so the queue
        delivers it again now instead of after its own timeout. Called by the reconciler once
        the store says the attempt's lease expired."""
        ...

    async def depth(self) -> int:
        """Tasks in this queue now: waiting, deferred or running (the backlog a metric shows
        and an autoscaler or alert reads)."""
        ...

    async def run(self, handler: Handler, *, concurrency: int) -> None:
        """Consume: hand each task to ``handler``, at most ``concurrency`` at once, until
        ``stop_consuming()`` (then return once the running handlers have returned) or
        cancellation (which cancels the running handlers). A handler's exception is logged and
        does not stop the consumer. When the handler returns a delay, the same task is
        delivered again after it. An outage of the queue's backend is ridden out: the consumer
        backs off and resumes by itself."""
        ...

    def stop_consuming(self) -> None:
        """Ask ``run()`` to take no more tasks and return once its running handlers return."""
        ...

    async def ping(self) -> None:
        """Raise ``QueueUnavailable`` if the queue cannot be used."""
        ...

    async def close(self) -> None: ...
