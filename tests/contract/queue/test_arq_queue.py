"""ArqQueue against real Redis, beyond the shared contract: failures, wire format, stale results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from arq.connections import ArqRedis

from pixelflow.adapters.queue.arq import PROCESS_JOB_FUNCTION, ArqQueue, decode_task
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
