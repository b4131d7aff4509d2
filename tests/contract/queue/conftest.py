"""Every Queue implementation, consumed through its own ``run()`` as the workers do (for
``ArqQueue``: a real arq ``Worker`` in-process against the test Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from pixelflow.adapters.queue.arq import ArqQueue
from pixelflow.adapters.queue.local import LocalQueue
from pixelflow.adapters.queue.protocol import Queue
from pixelflow.core.models import JobTask
from tests.support.redis import RedisRun

Handler = Callable[[JobTask], Awaitable[float | None]]
WAIT = 10.0  # seconds: the bound of every wait in this suite


@dataclass
class QueueUnderTest:
    queue: Queue
    consume: Callable[[Handler], contextlib.AbstractAsyncContextManager[None]]
    new_job_id: Callable[[], str]


@pytest.fixture(params=["local", "arq"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[QueueUnderTest]:
    if request.param == "local":
        local = LocalQueue(name="contract")
        counter = iter(range(1_000_000))
        yield QueueUnderTest(
            queue=local,
            consume=lambda handler: _consume(local, handler),
            new_job_id=lambda: f"job-{next(counter)}",
        )
        await local.close()
        return
    # Not the ``redis_run`` fixture: the local half of the suite must not need Redis.
    run = RedisRun()
    await run.check()
    arq_queue = await ArqQueue.open(run.url, name=run.queue_name)
    try:
        yield QueueUnderTest(
            queue=arq_queue,
            consume=lambda handler: _consume(arq_queue, handler),
            new_job_id=run.job_id,
        )
    finally:
        await arq_queue.close()
        await run.cleanup()


@contextlib.asynccontextmanager
async def _consume(queue: Queue, handler: Handler) -> AsyncIterator[None]:
    consumer = asyncio.create_task(queue.run(handler, concurrency=4))
    try:
        yield
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer


@dataclass
class Deliveries:
    """A handler that records what it is given; ``effect`` runs first and may raise."""

    effect: Callable[[JobTask, int], Awaitable[float | None]] | None = None
    tasks: list[JobTask] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __call__(self, task: JobTask) -> float | None:
        async with self._changed:
            self.tasks.append(task)
            seen = len(self.tasks)
            self._changed.notify_all()
        if self.effect is not None:
            return await self.effect(task, seen)
        return None

    async def wait_for(self, count: int) -> list[JobTask]:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: len(self.tasks) >= count)
        return list(self.tasks)

    def of(self, job_id: str) -> list[JobTask]:
        return [task for task in self.tasks if task.job_id == job_id]


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (bounded) until ``check()`` holds."""
    async with asyncio.timeout(WAIT):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)
