"""LocalQueue's consumer side, beyond the shared contract."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from pixelflow.adapters.queue.local import LocalQueue
from pixelflow.core.errors import QueueUnavailable
from pixelflow.core.models import JobTask
from tests.contract.queue.conftest import WAIT, Deliveries


async def test_runs_at_most_concurrency_handlers_at_once() -> None:
    queue = LocalQueue()
    release = asyncio.Event()
    running: set[str] = set()
    most_at_once = 0

    async def block(task: JobTask, seen: int) -> None:
        nonlocal most_at_once
        running.add(task.job_id)
        most_at_once = max(most_at_once, len(running))
        try:
            await release.wait()
        finally:
            running.discard(task.job_id)

    deliveries = Deliveries(effect=block)
    consumer = asyncio.create_task(queue.run(deliveries, concurrency=2))
    for n in range(5):
        await queue.enqueue(JobTask(job_id=f"job-{n}"))
    await deliveries.wait_for(2)
    await asyncio.sleep(0.1)  # room for a third handler to start, if the bound were broken

    assert len(deliveries.tasks) == 2
    assert await queue.is_pending("job-4") is True
    release.set()
    await deliveries.wait_for(5)
    assert most_at_once == 2

    await queue.close()
    async with asyncio.timeout(WAIT):
        await consumer


async def test_close_lets_running_handlers_finish_and_ends_run() -> None:
    queue = LocalQueue()
    release = asyncio.Event()
    finished: list[str] = []

    async def block(task: JobTask, seen: int) -> None:
        await release.wait()
        finished.append(task.job_id)

    deliveries = Deliveries(effect=block)
    consumer = asyncio.create_task(queue.run(deliveries, concurrency=1))
    await queue.enqueue(JobTask(job_id="running"))
    await queue.enqueue(JobTask(job_id="delayed"), delay=30)
    await deliveries.wait_for(1)

    await queue.close()
    await asyncio.sleep(0.05)
    assert not consumer.done()  # still waiting for the running handler
    release.set()
    async with asyncio.timeout(WAIT):
        await consumer

    assert finished == ["running"]
    assert await queue.is_pending("delayed") is False
    with pytest.raises(QueueUnavailable):
        await queue.enqueue(JobTask(job_id="late"))
    with pytest.raises(QueueUnavailable):
        await queue.ping()


async def test_cancelling_run_cancels_running_handlers() -> None:
    queue = LocalQueue()
    cancelled = asyncio.Event()

    async def hang(task: JobTask, seen: int) -> None:
        try:
            await asyncio.sleep(WAIT * 10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    deliveries = Deliveries(effect=hang)
    consumer = asyncio.create_task(queue.run(deliveries, concurrency=1))
    await queue.enqueue(JobTask(job_id="job"))
    await deliveries.wait_for(1)

    await _stop(consumer)

    assert cancelled.is_set()
    assert await queue.is_pending("job") is False


async def test_a_job_re_enqueued_by_its_handler_never_runs_twice_at_once() -> None:
    queue = LocalQueue()
    active = 0
    overlapped = False

    async def retry_once(task: JobTask, seen: int) -> None:
        nonlocal active, overlapped
        active += 1
        overlapped = overlapped or active > 1
        try:
            if seen == 1:
                assert await queue.enqueue(task) is True  # no delay: ready at once
                await asyncio.sleep(0.1)  # while a free slot could pick it up
        finally:
            active -= 1

    deliveries = Deliveries(effect=retry_once)
    consumer = asyncio.create_task(queue.run(deliveries, concurrency=4))
    await queue.enqueue(JobTask(job_id="job"))

    assert await deliveries.wait_for(2) == [JobTask(job_id="job")] * 2
    assert overlapped is False
    await _stop(consumer)


async def test_run_rejects_a_second_consumer_and_a_bad_concurrency() -> None:
    queue = LocalQueue()
    with pytest.raises(ValueError, match="concurrency"):
        await queue.run(Deliveries(), concurrency=0)

    consumer = asyncio.create_task(queue.run(Deliveries(), concurrency=1))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="consumer"):
        await queue.run(Deliveries(), concurrency=1)
    await queue.close()
    async with asyncio.timeout(WAIT):
        await consumer


async def _stop(consumer: asyncio.Task[None]) -> None:
    consumer.cancel()
    async with asyncio.timeout(WAIT):
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
