"""ArqQueue against real Redis, beyond the shared contract: failures, wire format, stale results."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from arq.connections import ArqRedis
from arq.constants import expires_extra_ms
from arq.jobs import Job

from pixelflow.adapters.queue import arq as arq_adapter
from pixelflow.adapters.queue.arq import (
    PROCESS_JOB_FUNCTION,
    ArqQueue,
    decode_task,
    deserialize_envelope,
)
from pixelflow.core.errors import QueueUnavailable
from pixelflow.core.models import JobTask
from tests.contract.queue.conftest import WAIT
from tests.support.redis import RedisRun, closed_port_url


@pytest.fixture
async def arq_queue(redis_run: RedisRun) -> AsyncIterator[ArqQueue]:
    queue = await ArqQueue.open(redis_run.url, name=redis_run.queue_name)
    yield queue
    await queue.close()


async def test_open_fails_fast_with_queue_unavailable_when_redis_is_down() -> None:
    url = closed_port_url()
    async with asyncio.timeout(WAIT):
        with pytest.raises(QueueUnavailable) as raised:
            await ArqQueue.open(url)
    assert raised.value.code == "queue_unavailable"
    assert "refused" not in raised.value.message.lower()


async def test_calls_raise_queue_unavailable_when_redis_goes_away() -> None:
    port = int(closed_port_url().rsplit(":", 1)[1].split("/")[0])
    queue = ArqQueue(ArqRedis(host="127.0.0.1", port=port, socket_connect_timeout=1))
    try:
        async with asyncio.timeout(WAIT):
            for call in (
                lambda: queue.enqueue(JobTask(job_id="job")),
                lambda: queue.is_pending("job"),
                queue.ping,
            ):
                with pytest.raises(QueueUnavailable) as raised:
                    await call()
                assert "refused" not in raised.value.message.lower()
            # Enqueues sharing a batch all fail with the outage.
            failed = await asyncio.gather(
                *(queue.enqueue(JobTask(job_id=f"job-{n}")) for n in range(5)),
                return_exceptions=True,
            )
            assert all(isinstance(error, QueueUnavailable) for error in failed)
    finally:
        await queue.close()


async def test_task_travels_as_msgpack_not_pickle(arq_queue: ArqQueue, redis_run: RedisRun) -> None:
    task = JobTask(job_id=redis_run.job_id(), traceparent="00-abc-def-01")
    assert await arq_queue.enqueue(task) is True

    async with redis_run.client() as redis:
        raw = await redis.get(f"arq:job:{task.job_id}")
        queued = await redis.zscore(redis_run.queue_name, task.job_id)

    assert raw is not None
    assert queued is not None
    envelope = msgspec.msgpack.decode(raw)
    assert envelope["f"] == PROCESS_JOB_FUNCTION
    assert [decode_task(payload) for payload in envelope["a"]] == [task]


async def test_a_kept_result_does_not_block_enqueueing_again(
    arq_queue: ArqQueue, redis_run: RedisRun
) -> None:
    job_id = redis_run.job_id()
    async with redis_run.client() as redis:
        await redis.set(f"arq:result:{job_id}", b"left over by a worker keeping results")

    assert await arq_queue.is_pending(job_id) is False
    assert await arq_queue.enqueue(JobTask(job_id=job_id)) is True
    assert await arq_queue.is_pending(job_id) is True
    assert await arq_queue.enqueue(JobTask(job_id=job_id)) is False


async def test_a_job_in_progress_is_pending(arq_queue: ArqQueue, redis_run: RedisRun) -> None:
    job_id = redis_run.job_id()
    async with redis_run.client() as redis:
        await redis.set(f"arq:in-progress:{job_id}", b"1", px=60_000)

    assert await arq_queue.is_pending(job_id) is True


async def test_a_kept_result_of_a_job_in_progress_still_blocks_enqueueing(
    arq_queue: ArqQueue, redis_run: RedisRun
) -> None:
    job_id = redis_run.job_id()
    async with redis_run.client() as redis:
        await redis.set(f"arq:in-progress:{job_id}", b"1", px=60_000)
        await redis.set(f"arq:result:{job_id}", b"kept")

        assert await arq_queue.enqueue(JobTask(job_id=job_id)) is False
        assert await redis.get(f"arq:result:{job_id}") == b"kept"
        assert await redis.exists(f"arq:job:{job_id}") == 0


async def test_enqueue_writes_what_arq_enqueue_job_writes(
    arq_queue: ArqQueue, redis_run: RedisRun
) -> None:
    """The one-script enqueue keeps arq's score (due time) and expiry, so arq's worker and
    ``Job`` read it as their own."""
    job_id = redis_run.job_id()
    before = time.time() * 1000 - 1  # arq rounds to the millisecond
    assert await arq_queue.enqueue(JobTask(job_id=job_id), delay=30) is True
    after = time.time() * 1000 + 1

    async with redis_run.client() as redis:
        score = await redis.zscore(redis_run.queue_name, job_id)
        ttl_ms = await redis.pttl(f"arq:job:{job_id}")
        info = await Job(
            job_id, redis, _queue_name=redis_run.queue_name, _deserializer=deserialize_envelope
        ).info()
    assert score is not None and before + 30_000 <= score <= after + 30_000
    assert expires_extra_ms < ttl_ms <= expires_extra_ms + 30_000
    assert info is not None and info.function == PROCESS_JOB_FUNCTION and info.job_try is None


async def test_enqueues_sharing_a_script_call_keep_their_own_due_times(
    arq_queue: ArqQueue, redis_run: RedisRun
) -> None:
    due_now = [redis_run.job_id() for _ in range(10)]
    deferred = [redis_run.job_id() for _ in range(10)]
    before = time.time() * 1000 - 1
    added = await asyncio.gather(
        *(arq_queue.enqueue(JobTask(job_id=job_id)) for job_id in due_now),
        *(arq_queue.enqueue(JobTask(job_id=job_id), delay=30) for job_id in deferred),
    )
    after = time.time() * 1000 + 1

    assert all(added)
    async with redis_run.client() as redis:
        for job_id in due_now:
            score = await redis.zscore(redis_run.queue_name, job_id)
            assert score is not None and before <= score <= after
        for job_id in deferred:
            score = await redis.zscore(redis_run.queue_name, job_id)
            assert score is not None and before + 30_000 <= score <= after + 30_000
            assert await redis.pttl(f"arq:job:{job_id}") > 30_000


async def test_tasks_enqueued_while_the_slots_are_busy_start_as_a_slot_frees(
    redis_run: RedisRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a poll delay far longer than the test, tasks enqueued while the only slot is busy
    still all run: the task ending makes the consumer poll again at once (arq's own loop would
    sleep the whole delay first)."""
    monkeypatch.setattr(arq_adapter, "_POLL_DELAY", 60.0)
    queue = await ArqQueue.open(redis_run.url, name=redis_run.queue_name)
    first, *later = [redis_run.job_id() for _ in range(6)]
    assert await queue.enqueue(JobTask(job_id=first)) is True
    seen: list[str] = []
    first_running, release, all_seen = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handler(task: JobTask) -> None:
        seen.append(task.job_id)
        if task.job_id == first:
            first_running.set()
            await release.wait()
        if len(seen) == 1 + len(later):
            all_seen.set()

    consumer = asyncio.create_task(queue.run(handler, concurrency=1))
    try:
        async with asyncio.timeout(WAIT):
            await first_running.wait()
            for job_id in later:
                assert await queue.enqueue(JobTask(job_id=job_id)) is True
            release.set()
            await all_seen.wait()
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await queue.close()
    assert sorted(seen) == sorted([first, *later])
