"""ClaimingWorker: arq's claim (not running anywhere, still queued, due; then the in-progress
key) for a whole poll in one script call, against real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.worker import func

from pixelflow.adapters.queue.arq import PROCESS_JOB_FUNCTION, ArqQueue, worker_settings
from pixelflow.adapters.queue.arq_claim import ClaimingWorker
from pixelflow.core.models import JobTask
from tests.contract.queue.conftest import WAIT
from tests.support.redis import RedisRun


@pytest.fixture
async def arq_queue(redis_run: RedisRun) -> AsyncIterator[ArqQueue]:
    queue = await ArqQueue.open(redis_run.url, name=redis_run.queue_name)
    yield queue
    await queue.close()


@dataclass
class Started:
    job_ids: list[str] = field(default_factory=list)
    any: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def claiming_worker(
    redis: ArqRedis, queue_name: str, *, max_jobs: int
) -> AsyncIterator[tuple[ClaimingWorker, Started]]:
    """A worker whose jobs record their id and then wait until the worker is closed."""
    started = Started()
    hold = asyncio.Event()

    async def process_job(ctx: dict[str, Any], payload: bytes) -> None:
        started.job_ids.append(ctx["job_id"])
        started.any.set()
        await hold.wait()

    worker = ClaimingWorker(
        functions=[func(process_job, name=PROCESS_JOB_FUNCTION)],
        redis_pool=redis,
        max_jobs=max_jobs,
        handle_signals=False,
        **worker_settings(name=queue_name),
    )
    try:
        yield worker, started
    finally:
        for task in worker.tasks.values():
            task.cancel()
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)


async def _queued(redis: ArqRedis, queue_name: str) -> list[bytes]:
    job_ids: list[bytes] = await redis.zrange(queue_name, 0, -1)
    return job_ids


async def test_a_claim_skips_jobs_running_elsewhere_and_jobs_not_yet_due(
    arq_queue: ArqQueue, redis_run: RedisRun
) -> None:
    elsewhere, deferred, free = (redis_run.job_id() for _ in range(3))
    for job_id in (elsewhere, free):
        assert await arq_queue.enqueue(JobTask(job_id=job_id))
    assert await arq_queue.enqueue(JobTask(job_id=deferred), delay=30)
    redis = arq_queue._redis
    await redis.psetex(in_progress_key_prefix + elsewhere, 60_000, b"1")  # another worker's

    async with claiming_worker(redis, redis_run.queue_name, max_jobs=3) as (worker, started):
        await worker.start_jobs(await _queued(redis, redis_run.queue_name))
        async with asyncio.timeout(WAIT):
            await started.any.wait()

        assert set(worker.tasks) == {free}
        assert worker.job_counter == 1
        assert started.job_ids == [free]
        expiry_ms = await redis.pttl(in_progress_key_prefix + free)
        assert 0 < expiry_ms <= worker.in_progress_timeout_s * 1000
        assert await redis.exists(in_progress_key_prefix + deferred) == 0
        assert await redis.pttl(in_progress_key_prefix + elsewhere) > 50_000  # left as it was


async def test_a_claim_takes_no_more_jobs_than_there_are_free_slots(
    arq_queue: ArqQueue, redis_run: RedisRun
) -> None:
    job_ids = [redis_run.job_id() for _ in range(5)]
    for job_id in job_ids:
        assert await arq_queue.enqueue(JobTask(job_id=job_id))
    redis = arq_queue._redis
    queued = await _queued(redis, redis_run.queue_name)

    async with claiming_worker(redis, redis_run.queue_name, max_jobs=2) as (worker, _):
        await worker.start_jobs(queued)
        await worker.start_jobs(queued)  # no slot left: claims nothing

        assert list(worker.tasks) == [job_id.decode() for job_id in queued[:2]]
        assert worker.job_counter == 2
        running = [await redis.exists(in_progress_key_prefix + job_id) for job_id in job_ids]
        assert sum(running) == 2


async def test_workers_polling_one_queue_run_each_job_once(redis_run: RedisRun) -> None:
    queues = [await ArqQueue.open(redis_run.url, name=redis_run.queue_name) for _ in range(3)]
    job_ids = [redis_run.job_id() for _ in range(60)]
    runs: Counter[str] = Counter()
    all_ran = asyncio.Event()

    async def handler(task: JobTask) -> None:
        runs[task.job_id] += 1
        await asyncio.sleep(0.005)
        if len(runs) == len(job_ids):
            all_ran.set()

    consumers = [asyncio.create_task(queue.run(handler, concurrency=2)) for queue in queues]
    try:
        added = await asyncio.gather(
            *(queues[0].enqueue(JobTask(job_id=job_id)) for job_id in job_ids)
        )
        assert all(added)
        async with asyncio.timeout(WAIT):
            await all_ran.wait()
        await asyncio.sleep(0.2)  # room for a second delivery of any job, were there one
    finally:
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        for queue in queues:
            await queue.close()
    assert set(runs) == set(job_ids)
    assert set(runs.values()) == {1}
