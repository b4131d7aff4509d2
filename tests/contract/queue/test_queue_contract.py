"""The Queue contract, run against every implementation."""

from __future__ import annotations

import asyncio
import contextlib

from pixelflow.core.models import JobTask
from tests.contract.queue.conftest import WAIT, Deliveries, QueueUnderTest, eventually


async def test_enqueue_is_once_per_job_id(subject: QueueUnderTest) -> None:
    queue, job_id = subject.queue, subject.new_job_id()

    assert await queue.enqueue(JobTask(job_id=job_id)) is True
    assert await queue.enqueue(JobTask(job_id=job_id)) is False
    assert await queue.enqueue(JobTask(job_id=job_id), delay=5) is False
    assert await queue.is_pending(job_id) is True
    assert await queue.is_pending(subject.new_job_id()) is False


async def test_concurrent_enqueues_of_one_job_enqueue_it_once(subject: QueueUnderTest) -> None:
    job_id = subject.new_job_id()

    results = await asyncio.gather(
        *(subject.queue.enqueue(JobTask(job_id=job_id)) for _ in range(10))
    )

    assert results.count(True) == 1
    assert results.count(False) == 9


async def test_concurrent_enqueues_of_many_jobs_each_get_their_own_answer(
    subject: QueueUnderTest,
) -> None:
    """Enqueues arriving together may share a round trip: each still answers for its own job."""
    queue = subject.queue
    job_ids = [subject.new_job_id() for _ in range(30)]
    assert await queue.enqueue(JobTask(job_id=job_ids[3])) is True

    results = await asyncio.gather(
        *(
            queue.enqueue(JobTask(job_id=job_id), delay=30 if n % 2 else 0)
            for n, job_id in enumerate(job_ids)
        )
    )

    assert results == [n != 3 for n in range(30)]
    assert all([await queue.is_pending(job_id) for job_id in job_ids])
    assert await queue.depth() == 30


async def test_task_is_delivered_decoded_and_then_no_longer_pending(
    subject: QueueUnderTest,
) -> None:
    queue, job_id = subject.queue, subject.new_job_id()
    task = JobTask(
        job_id=job_id, traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    deliveries = Deliveries()

    async with subject.consume(deliveries):
        assert await queue.enqueue(task) is True
        assert await deliveries.wait_for(1) == [task]
        await eventually(lambda: _not_pending(subject, job_id))

        # Finished, so the same job may be enqueued (and delivered) again.
        assert await queue.enqueue(task) is True
        assert await deliveries.wait_for(2) == [task, task]


async def test_delayed_task_is_pending_and_not_delivered_before_its_delay(
    subject: QueueUnderTest,
) -> None:
    queue, job_id = subject.queue, subject.new_job_id()
    deliveries = Deliveries()

    async with subject.consume(deliveries):
        assert await queue.enqueue(JobTask(job_id=job_id), delay=0.8) is True
        await asyncio.sleep(0.3)

        assert deliveries.tasks == []
        assert await queue.is_pending(job_id) is True
        assert await queue.enqueue(JobTask(job_id=job_id)) is False
        assert await deliveries.wait_for(1) == [JobTask(job_id=job_id)]


async def test_a_failing_handler_does_not_stop_the_consumer(subject: QueueUnderTest) -> None:
    queue = subject.queue
    failing, healthy = subject.new_job_id(), subject.new_job_id()

    async def fail_first(task: JobTask, seen: int) -> None:
        if task.job_id == failing:
            raise RuntimeError("handler bug")

    deliveries = Deliveries(effect=fail_first)
    async with subject.consume(deliveries):
        assert await queue.enqueue(JobTask(job_id=failing)) is True
        await deliveries.wait_for(1)
        await eventually(lambda: _not_pending(subject, failing))

        assert await queue.enqueue(JobTask(job_id=healthy)) is True
        await deliveries.wait_for(2)
        # The failed job is not stuck: it can be enqueued again.
        assert await queue.enqueue(JobTask(job_id=failing)) is True
        await deliveries.wait_for(3)

    assert [task.job_id for task in deliveries.tasks] == [failing, healthy, failing]


async def test_a_handler_returning_a_delay_gets_its_task_again(subject: QueueUnderTest) -> None:
    """A retry with backoff: the running handler asks for its own task again, after 0.2 s."""
    queue, job_id = subject.queue, subject.new_job_id()
    pending_while_running: list[bool] = []

    async def retry_once(task: JobTask, seen: int) -> float | None:
        pending_while_running.append(await queue.is_pending(task.job_id))
        return 0.2 if seen == 1 else None

    deliveries = Deliveries(effect=retry_once)
    async with subject.consume(deliveries):
        assert await queue.enqueue(JobTask(job_id=job_id)) is True
        await deliveries.wait_for(2)
        await eventually(lambda: _not_pending(subject, job_id))
        await asyncio.sleep(0.5)  # and no third delivery

    assert pending_while_running == [True, True]
    assert deliveries.of(job_id) == [JobTask(job_id=job_id)] * 2


async def test_stop_consuming_lets_running_handlers_finish(subject: QueueUnderTest) -> None:
    queue, job_id, later = subject.queue, subject.new_job_id(), subject.new_job_id()
    release = asyncio.Event()
    finished: list[str] = []

    async def block(task: JobTask, seen: int) -> None:
        await release.wait()
        finished.append(task.job_id)

    deliveries = Deliveries(effect=block)
    consumer = asyncio.create_task(queue.run(deliveries, concurrency=4))
    try:
        assert await queue.enqueue(JobTask(job_id=job_id)) is True
        await deliveries.wait_for(1)
        queue.stop_consuming()
        assert await queue.enqueue(JobTask(job_id=later)) is True
        await asyncio.sleep(0.5)
        assert not consumer.done()  # still waiting for the running handler
        release.set()
        async with asyncio.timeout(WAIT):
            await consumer
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    assert finished == [job_id]
    assert [task.job_id for task in deliveries.tasks] == [job_id]


async def test_ping_succeeds_on_a_working_queue(subject: QueueUnderTest) -> None:
    await subject.queue.ping()


async def _not_pending(subject: QueueUnderTest, job_id: str) -> bool:
    return not await subject.queue.is_pending(job_id)


async def test_depth_counts_waiting_deferred_and_running_tasks(subject: QueueUnderTest) -> None:
    queue = subject.queue
    first, deferred = subject.new_job_id(), subject.new_job_id()
    assert await queue.depth() == 0

    assert await queue.enqueue(JobTask(job_id=first)) is True
    assert await queue.enqueue(JobTask(job_id=deferred), delay=30) is True
    assert await queue.enqueue(JobTask(job_id=first)) is False  # not counted twice
    assert await queue.depth() == 2

    release = asyncio.Event()

    async def hold(task: JobTask, seen: int) -> None:
        await release.wait()

    deliveries = Deliveries(effect=hold)
    async with subject.consume(deliveries):
        await deliveries.wait_for(1)
        assert await queue.depth() == 2  # one running, one deferred
        release.set()
        await eventually(lambda: _depth_is(subject, 1))


async def _depth_is(subject: QueueUnderTest, expected: int) -> bool:
    return await subject.queue.depth() == expected
