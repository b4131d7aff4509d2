"""The production queue: arq on Redis.

The job id is arq's job id, and ``arq:job:<id>`` existing is what keeps a job from being enqueued
twice: the key exists from enqueue until the worker finishes the job, deferred and running
included. ``enqueue`` writes arq's own keys (the envelope under ``arq:job:<id>``, the id in the
queue's sorted set) with one Lua script, which checks and writes each job atomically in a
single round trip where arq's ``enqueue_job`` takes a WATCH/EXISTS/MULTI/EXEC transaction. Under
load, the enqueues that arrive while one is in flight share the next script call (a
``Batcher``); each still answers for its own job.

arq refuses an id while a *result* is kept for it too, so the worker must run with
``keep_result=0`` (see ``worker_settings``); ``enqueue`` also clears a stale result it finds
(unless the job is still in progress).

The arq envelope is msgpack rather than arq's default pickle, so nothing read back from Redis is
ever unpickled. Producer and consumer agree on it: ``run`` builds its arq ``Worker`` from
``worker_settings``, on this queue's own connection pool. That worker is arq's, but for how it
claims the jobs a poll finds: one script call for all of them (``arq_claim.ClaimingWorker``)
where arq takes four round trips per job. Nothing outside these modules touches arq.

Polling the queue's sorted set is the source of truth; a wake-up only makes an idle consumer poll
sooner. ``enqueue`` publishes one on ``<queue name>:wake`` (``wake_channel``) when it adds a job
that is due at once (one per script call, however many such jobs it adds), and ``run`` listens
on that channel (a PubSub on a connection of its own from the pool), so a job enqueued to an
idle worker is claimed within a round trip rather than at the next poll. A wake-up lost to a
Redis outage costs at most one poll delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import msgspec
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from arq.worker import Retry, Worker, func
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from pixelflow.adapters.batching import Batcher
from pixelflow.adapters.queue.arq_claim import ClaimingWorker
from pixelflow.adapters.queue.protocol import Handler
from pixelflow.core.backoff import backoff
from pixelflow.core.errors import QueueUnavailable
from pixelflow.core.models import JobTask

logger = logging.getLogger(__name__)

PROCESS_JOB_FUNCTION = "process_job"

# arq counts every pick-up of a job, retries included; PixelFlow counts attempts in the store
# and decides itself when to stop, so arq's own limit only has to stay out of the way.
ARQ_MAX_TRIES = 1_000

# Failures of a Redis call that mean "Redis is not there right now".
_REDIS_DOWN: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
# The consumer polls this often (sooner when woken), and backs off up to this long while Redis
# is down.
_POLL_DELAY = 0.2
_RECONNECT_CAP = 10.0
# The wake-up listener's first retry after losing Redis: its own, as resubscribing quickly does
# not depend on how often the queue is polled.
_RESUBSCRIBE_DELAY = 0.2
# One read of the wake-up subscription waits this long for a message. Given explicitly, it makes
# redis-py answer "no message" when it runs out, rather than apply the pool's socket timeout (if
# one is set) and take a subscription that is quiet, as it mostly is, for an outage.
_WAKE_READ_TIMEOUT = 60.0

# arq's enqueue_job in one atomic step per job, for a batch of jobs, plus the stale-result rule:
# refuse while the job's key exists (waiting, deferred or running); a kept result blocks only
# while the job is in progress, otherwise it is stale and cleared. When a job added is due at
# once, one wake-up naming the first such job is published on the channel (a channel is not a
# key, hence ARGV; a deferred job is not announced, as no poll would take it yet). Answers, for
# each job, 1 (added) or 0 (refused).
# KEYS: the queue, then per job: job, in-progress, result. ARGV: the wake-up channel, then per
# job: envelope, expiry in ms, job id, score, 1 if due at once else 0.
_ENQUEUE_SCRIPT = """
local added = {}
local announce = nil
for i = 0, (#KEYS - 1) / 3 - 1 do
  local job, running, result = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i]
  local envelope, expiry, id, score, due = unpack(ARGV, 2 + 5 * i, 6 + 5 * i)
  local ok = 1
  if redis.call('EXISTS', job) == 1 then
    ok = 0
  elseif redis.call('EXISTS', result) == 1 then
    if redis.call('EXISTS', running) == 1 then ok = 0 else redis.call('DEL', result) end
  end
  if ok == 1 then
    redis.call('PSETEX', job, expiry, envelope)
    redis.call('ZADD', KEYS[1], score, id)
    if due == '1' and announce == nil then announce = id end
  end
  added[i + 1] = ok
end
if announce then redis.call('PUBLISH', ARGV[1], announce) end
return added
"""

_task_decoder = msgspec.msgpack.Decoder(JobTask)
# arq puts exceptions into failure results; store their text rather than fail to encode them.
_envelope_encoder = msgspec.msgpack.Encoder(enc_hook=repr)


def encode_task(task: JobTask) -> bytes:
    return msgspec.msgpack.encode(task)


def decode_task(payload: bytes) -> JobTask:
    """The worker function's argument back as a task (raises ``msgspec.DecodeError``)."""
    return _task_decoder.decode(payload)


def serialize_envelope(envelope: dict[str, Any]) -> bytes:
    return _envelope_encoder.encode(envelope)


def deserialize_envelope(data: bytes) -> dict[str, Any]:
    envelope: dict[str, Any] = msgspec.msgpack.decode(data)
    return envelope


def wake_channel(name: str) -> str:
    """The channel ``enqueue`` announces a job on, for queue ``name`` (a hint: see ``run``)."""
    return f"{name}:wake"


def worker_settings(*, name: str) -> dict[str, Any]:
    """The arq ``Worker`` options this producer depends on; add functions, Redis and limits."""
    return {
        "queue_name": name,
        "keep_result": 0,
        "max_tries": ARQ_MAX_TRIES,
        "job_serializer": serialize_envelope,
        "job_deserializer": deserialize_envelope,
    }


async def handle_payload(handler: Handler, payload: bytes) -> None:
    """Run ``handler`` on an arq job's payload: the body of the ``process_job`` worker function.

    arq keeps ``arq:job:<id>`` until a job finishes, so a running job cannot be enqueued again
    under its id; a retry the handler asks for (by returning a delay) is handed back to arq as
    ``Retry(defer=delay)`` instead, which keeps the id.
    """
    task = decode_task(payload)
    retry_in = await handler(task)
    if retry_in is not None:
        raise Retry(defer=retry_in)


class ArqQueue:
    def __init__(
        self,
        redis: ArqRedis,
        *,
        name: str = "default",
        call_timeout: float = 2.0,
        task_timeout: float = 300.0,
    ) -> None:
        self.name = name
        self._redis = redis
        # redis-py has no read timeout here (arq sets only the connect timeout): bound each call.
        self._timeout = call_timeout
        # arq must never time a task out before its handler does: it would run it twice.
        self._task_timeout = task_timeout
        self._stopping: asyncio.Event | None = None
        self._enqueue_script = redis.register_script(_ENQUEUE_SCRIPT)
        # Under load, the enqueues arriving while one is in flight go to Redis together, in
        # one script call.
        self._enqueues = Batcher(self._enqueue_batch, outage=QueueUnavailable)

    @classmethod
    async def open(
        cls,
        redis_url: str,
        *,
        name: str = "default",
        call_timeout: float = 2.0,
        task_timeout: float = 300.0,
    ) -> ArqQueue:
        """Connect (one attempt) and return the queue; ``QueueUnavailable`` if Redis is down."""
        settings = RedisSettings.from_dsn(redis_url)
        settings.conn_timeout = max(1, round(call_timeout))
        settings.conn_retries = 0
        try:
            async with asyncio.timeout(call_timeout):
                redis = await create_pool(
                    settings,
                    default_queue_name=name,
                    job_serializer=serialize_envelope,
                    job_deserializer=deserialize_envelope,
                )
        except (RedisError, OSError, TimeoutError) as exc:
            raise QueueUnavailable("the queue (Redis) cannot be reached") from exc
        return cls(redis, name=name, call_timeout=call_timeout, task_timeout=task_timeout)

    async def enqueue(self, task: JobTask, *, delay: float = 0.0) -> bool:
        return await self._enqueues.add((task, delay))

    async def is_pending(self, job_id: str) -> bool:
        async with self._redis_call():
            return await self._exists(job_key_prefix, in_progress_key_prefix, job_id=job_id)

    async def release(self, job_id: str) -> None:
        # arq keeps a job in its queue until the job finishes; only the in-progress key (which
        # would expire after the function's timeout) stops another worker from picking it up.
        async with self._redis_call():
            await self._redis.delete(in_progress_key_prefix + job_id)

    async def depth(self) -> int:
        # arq's queue is a sorted set holding each job from enqueue until it finishes.
        async with self._redis_call():
            count: int = await self._redis.zcard(self.name)
            return count

    async def run(self, handler: Handler, *, concurrency: int) -> None:
        """Consume with an arq ``Worker`` sharing this queue's connection pool.

        arq's own ``Worker.main`` lets a Redis error escape its poll loop (a Redis restart
        ends the process). Here the poll loop is driven step by step: an error backs off
        (capped) and polling resumes once Redis answers again; redis-py reconnects by itself.
        Jobs already running carry on meanwhile: their state is in the store, not in Redis.

        Beside it, a listener task subscribed to ``wake_channel`` sets an event on each wake-up
        ``enqueue`` publishes, which ends the poll loop's wait at once. Both tasks live and end
        with this call.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")

        async def process_job(ctx: dict[str, Any], payload: bytes) -> None:
            await handle_payload(handler, payload)

        worker = ClaimingWorker(
            functions=[
                func(
                    process_job,
                    name=PROCESS_JOB_FUNCTION,
                    timeout=self._task_timeout,
                )
            ],
            redis_pool=self._redis,
            max_jobs=concurrency,
            handle_signals=False,
            poll_delay=_POLL_DELAY,
            **worker_settings(name=self.name),
        )
        self._stopping = stopping = asyncio.Event()
        wake = asyncio.Event()
        listening = asyncio.create_task(_listen_for_wakeups(self._redis, self.name, wake))
        polling = asyncio.create_task(_poll_forever(worker, self.name, wake))
        try:
            await stopping.wait()
            worker.allow_pick_jobs = False
            running = [task for task in worker.tasks.values() if not task.done()]
            if running:
                await asyncio.wait(running)
        finally:
            polling.cancel()
            # The listener closes its subscription as it ends.
            left = [*worker.tasks.values(), polling, listening]
            for task in left:
                task.cancel()
            # Cancelled handlers hand their jobs back; let them finish doing so.
            await asyncio.gather(*left, return_exceptions=True)
            self._stopping = None

    def stop_consuming(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def ping(self) -> None:
        async with self._redis_call():
            await self._redis.ping()

    async def close(self) -> None:
        await self._enqueues.close()
        await self._redis.aclose()

    async def _enqueue_batch(self, batch: Sequence[tuple[JobTask, float]]) -> list[bool]:
        """What ``enqueue_job`` would write for each task (same envelope, score and expiry),
        in one script call; whether each task was added."""
        now = timestamp_ms()
        keys = [self.name]
        args: list[str | bytes | int] = [wake_channel(self.name)]
        for task, delay in batch:
            score = now + max(0, round(delay * 1000))
            envelope = serialize_job(
                PROCESS_JOB_FUNCTION,
                (encode_task(task),),
                {},
                None,
                now,
                serializer=serialize_envelope,
            )
            expires_ms = score - now + self._redis.expires_extra_ms
            keys += [
                job_key_prefix + task.job_id,
                in_progress_key_prefix + task.job_id,
                result_key_prefix + task.job_id,
            ]
            args += [envelope, expires_ms, task.job_id, score, int(score <= now)]
        async with self._redis_call():
            added = await self._enqueue_script(keys=keys, args=args)
        return [bool(flag) for flag in added]

    async def _exists(self, *prefixes: str, job_id: str) -> bool:
        found: int = await self._redis.exists(*(prefix + job_id for prefix in prefixes))
        return found > 0

    @asynccontextmanager
    async def _redis_call(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except (RedisError, OSError, TimeoutError) as exc:
            raise QueueUnavailable("the queue (Redis) is unavailable") from exc


async def _poll_forever(worker: Worker, name: str, wake: asyncio.Event) -> None:
    """arq's poll loop (``Worker.main`` without its pool set-up and start-up logs), riding out
    Redis outages. The outage itself is reported by the worker's dependency watch, once.

    Unlike arq's loop it does not sleep ``poll_delay`` after every poll: a poll that started jobs
    with slots still free polls again at once, a running job that ends cuts the wait short, and
    so does ``wake`` (set by the wake-up listener when a job is enqueued) while a slot is free.
    So a backlog is taken as fast as slots free up and a job enqueued to an idle worker at once;
    an idle queue is still polled every delay, which finds whatever a lost wake-up announced."""
    failures = 0
    while True:
        started = worker._jobs_started()
        # Cleared before the poll, not after: a wake-up arriving during the poll (for a job it
        # may have missed) still ends the next wait.
        wake.clear()
        try:
            # A private arq method, pinned by the arq version: the one step of its loop.
            await worker._poll_iteration()
        except Exception as exc:
            if not isinstance(exc, _REDIS_DOWN):
                # Not an outage (a bug, or arq surprising us): say so, and keep consuming.
                logger.exception("queue %s: poll failed", name)
            failures += 1
            delay = backoff(failures, base=_POLL_DELAY, cap=_RECONNECT_CAP)
            logger.debug("queue %s: poll failed (%r); again in %.1f s", name, exc, delay)
            await asyncio.sleep(delay)
            continue
        failures = 0
        if worker._jobs_started() > started and worker.job_counter < worker.max_jobs:
            continue  # it took jobs and has room for more: more may be waiting right now
        await _wait_to_poll(worker, wake)


async def _wait_to_poll(worker: Worker, wake: asyncio.Event) -> None:
    """Wait for the poll delay, or less: until a running job ends (its slot is free again, and
    the queue may hold more) or, while a slot is free, until ``wake`` is set (a job was
    enqueued). Nothing in flight is cancelled to wake up: only waits end early."""
    waits: list[asyncio.Future[Any]] = [task for task in worker.tasks.values() if not task.done()]
    woken: asyncio.Task[bool] | None = None
    if worker.job_counter < worker.max_jobs:
        if wake.is_set():
            return
        woken = asyncio.create_task(wake.wait())
        waits.append(woken)
    if not waits:
        await asyncio.sleep(_POLL_DELAY)
        return
    try:
        await asyncio.wait(waits, timeout=_POLL_DELAY, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if woken is not None:
            woken.cancel()


async def _listen_for_wakeups(redis: ArqRedis, name: str, wake: asyncio.Event) -> None:
    """Set ``wake`` on each wake-up published for queue ``name``, and each time the subscription
    is made: a job enqueued before then was announced to no one, so the poll loop looks at once.

    Rides out Redis outages as the poll loop does (backs off, capped, and subscribes again),
    logging only at debug: polling every ``_POLL_DELAY`` still finds the work meanwhile."""
    failures = 0
    while True:
        try:
            async with _subscription(redis, wake_channel(name)) as pubsub:
                while True:
                    message = await pubsub.get_message(timeout=_WAKE_READ_TIMEOUT)
                    if message is not None:  # a wake-up, or the subscription's confirmation
                        failures = 0
                        wake.set()
        except Exception as exc:
            if not isinstance(exc, _REDIS_DOWN):
                logger.exception("queue %s: wake-up listener failed", name)
            failures += 1
            delay = backoff(failures, base=_RESUBSCRIBE_DELAY, cap=_RECONNECT_CAP)
            logger.debug(
                "queue %s: wake-up subscription lost (%r); again in %.1f s", name, exc, delay
            )
            await asyncio.sleep(delay)


@asynccontextmanager
async def _subscription(redis: ArqRedis, channel: str) -> AsyncIterator[PubSub]:
    """A PubSub subscribed to ``channel``, holding a connection of its own from the pool until
    it is closed (always, however the block ends: its connection goes back to the pool)."""
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(channel)
        yield pubsub
    finally:
        # Its connection may be broken already (the outage that ended the block).
        with suppress(*_REDIS_DOWN):
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
