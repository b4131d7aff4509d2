"""ArqQueue's wake-ups: ``enqueue`` publishes one on the queue's wake channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.client import PubSub

from pixelflow.adapters.queue.arq import ArqQueue, wake_channel
from pixelflow.core.models import JobTask
from tests.contract.queue.conftest import WAIT
from tests.support.redis import RedisRun


@pytest.fixture
async def arq_queue(redis_run: RedisRun) -> AsyncIterator[ArqQueue]:
    queue = await ArqQueue.open(redis_run.url, name=redis_run.queue_name)
    yield queue
    await queue.close()


async def next_message(pubsub: PubSub) -> bytes:
    """The next published message's data (skipping the subscription's confirmation)."""
    async with asyncio.timeout(WAIT):
        while True:
            message = await pubsub.get_message(timeout=WAIT)
            if message is not None and message["type"] == "message":
                data: bytes = message["data"]
                return data


async def test_enqueue_announces_a_job_due_now_and_not_a_deferred_one(
    arq_queue: ArqQueue, redis_run: RedisRun
) -> None:
    deferred, due = redis_run.job_id(), redis_run.job_id()
    async with redis_run.client() as redis, redis.pubsub() as pubsub:
        await pubsub.subscribe(wake_channel(redis_run.queue_name))
        assert await arq_queue.enqueue(JobTask(job_id=deferred), delay=30) is True
        assert await arq_queue.enqueue(JobTask(job_id=due)) is True
        assert await arq_queue.enqueue(JobTask(job_id=due)) is False  # not added: no wake-up
        # Published in order: had the deferred job been announced, its message would come first;
        # had the refused enqueue been, a second one would follow.
        assert await next_message(pubsub) == due.encode()
        assert await pubsub.get_message(timeout=0.5) is None
