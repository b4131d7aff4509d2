"""The job queue carries only ids; anything lost from it is re-derived from the store."""

from __future__ import annotations

from typing import Protocol

from pixelflow.core.models import JobTask


class Queue(Protocol):
    name: str

    async def enqueue(self, task: JobTask, *, delay: float = 0.0) -> bool:
        """Enqueue with the job id as the task id: True if enqueued now, False if a task for
        this job is already waiting or running (so a job is never enqueued twice)."""
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

    async def ping(self) -> None:
        """Raise ``QueueUnavailable`` if the queue cannot be used."""
        ...

    async def close(self) -> None: ...
