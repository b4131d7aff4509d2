"""ArqQueue's wake-ups: ``enqueue`` publishes one on the queue's wake channel and an idle
consumer polls at once, rather than at its next poll.

Every consumer here runs with the poll delay patched to a minute, far beyond each test's bound:
a job it picks up within the bound was found because a wake-up ended its wait."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from pixelflow.adapters.queue import arq as arq_adapter
from pixelflow.adapters.queue.arq import ArqQueue, wake_channel
from pixelflow.core.models import JobTask
from tests.contract.queue.conftest import WAIT, Deliveries, eventually
from tests.support.redis import RedisRun
from tests.support.redis_server import RedisServer, private_redis

LONG_POLL_DELAY = 60.0


@pytest.fixture(autouse=True)
def long_poll_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arq_adapter, "_POLL_DELAY", LONG_POLL_DELAY)


@pytest.fixture
async def arq_queue(redis_run: RedisRun) -> AsyncIterator[ArqQueue]:
    queue = await ArqQueue.open(redis_run.url, name=redis_run.queue_name)
    yield queue
    await queue.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server: the shared one must never be restarted."""
    with private_redis(tmp_path / "redis") as server:
        yield server


@contextlib.asynccontextmanager
async def consuming(
    queue: ArqQueue, handler: Callable[[JobTask], Awaitable[float | None]]
) -> AsyncIterator[asyncio.Task[None]]:
    consumer = asyncio.create_task(queue.run(handler, concurrency=2))
    try:
        yield consumer
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer


async def subscribers(url: str, channel: str) -> int:
    async with Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5) as redis:
        counts = dict(await redis.pubsub_numsub(channel))
    return int(counts.get(channel.encode(), 0))


async def until_subscribed(url: str, channel: str, count: int = 1) -> None:
    async def reached() -> bool:
        return await subscribers(url, channel) == count

    await eventually(reached)


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


async def test_an_idle_consumer_takes_a_job_as_it_is_enqueued(
    arq_queue: ArqQueue, redis_run: RedisRun
) -> None:
    first, deferred, woken = redis_run.job_id(), redis_run.job_id(), redis_run.job_id()
    channel = wake_channel(redis_run.queue_name)
    deliveries = Deliveries()
    async with consuming(arq_queue, deliveries):
        assert await arq_queue.enqueue(JobTask(job_id=first)) is True
        await deliveries.wait_for(1)
        await until_subscribed(redis_run.url, channel)
        await asyncio.sleep(0.3)  # the first job's end ends a wait too: let the consumer idle

        assert await arq_queue.enqueue(JobTask(job_id=deferred), delay=30) is True
        assert await arq_queue.enqueue(JobTask(job_id=woken)) is True
        assert await deliveries.wait_for(2) == [JobTask(job_id=first), JobTask(job_id=woken)]
        # The wake-up made it poll, and a poll takes only what is due.
        assert await arq_queue.is_pending(deferred) is True
        assert deliveries.of(deferred) == []
    await until_subscribed(redis_run.url, channel, count=0)  # cancelling closed the subscription


async def test_stop_consuming_closes_the_subscription_cleanly(
    arq_queue: ArqQueue, redis_run: RedisRun, caplog: pytest.LogCaptureFixture
) -> None:
    """No pending task or open connection is left behind for the garbage collector to warn
    about: the subscription's connection went back to the pool, which ``close`` closes."""
    channel = wake_channel(redis_run.queue_name)
    gc.collect()  # what earlier tests left for the collector warns now, not in the block below
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        async with consuming(arq_queue, Deliveries()) as consumer:
            await until_subscribed(redis_run.url, channel)
            arq_queue.stop_consuming()
            async with asyncio.timeout(WAIT):
                await consumer
        assert await subscribers(redis_run.url, channel) == 0
        await arq_queue.close()
        gc.collect()
    assert [str(w.message) for w in warned if issubclass(w.category, ResourceWarning)] == []
    # "Task was destroyed but it is pending!" would be an asyncio error record.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_wake_ups_resume_after_a_redis_restart(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener loses its subscription when Redis goes away, retries while it is down
    (quietly), and subscribes again once it is back: a job enqueued then still wakes the
    consumer."""
    # The consumer is idle when Redis goes away, so no poll should fail; should one still
    # (the machine is slow), its backoff (from the minute-long poll delay) ends within the bound.
    monkeypatch.setattr(arq_adapter, "_RECONNECT_CAP", 2.0)
    caplog.set_level(logging.DEBUG, logger=arq_adapter.__name__)
    name = f"wake-{uuid.uuid4().hex[:8]}"
    channel = wake_channel(name)
    before, after = f"{name}-before", f"{name}-after"
    consumer_queue = await ArqQueue.open(redis_server.url, name=name)
    producer = await ArqQueue.open(redis_server.url, name=name)
    deliveries = Deliveries()
    try:
        async with consuming(consumer_queue, deliveries):
            await until_subscribed(redis_server.url, channel)
            assert await producer.enqueue(JobTask(job_id=before)) is True
            await deliveries.wait_for(1)
            await eventually(lambda: _finished(producer, before))
            await asyncio.sleep(0.3)  # and the poll its end set off: the consumer is idle

            redis_server.stop()
            await asyncio.sleep(1.5)  # long enough for the listener to fail to resubscribe
            redis_server.start()
            await until_subscribed(redis_server.url, channel)

            await asyncio.sleep(0.3)  # so that the wake-up, not the resubscription, finds it
            assert await producer.enqueue(JobTask(job_id=after)) is True
            assert await deliveries.wait_for(2) == [JobTask(job_id=before), JobTask(job_id=after)]
    finally:
        await producer.close()
        await consumer_queue.close()

    lost = [r for r in caplog.records if "wake-up subscription lost" in r.getMessage()]
    assert len(lost) >= 2, "the listener never retried while Redis was down"
    assert all(record.levelno == logging.DEBUG for record in lost)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not any(record.exc_info for record in caplog.records)


async def _finished(queue: ArqQueue, job_id: str) -> bool:
    return not await queue.is_pending(job_id)
