"""The production queue: arq on Redis.

The job id is arq's job id, so arq's own uniqueness check (``enqueue_job`` returns ``None`` while
``arq:job:<id>`` exists) is what keeps a job from being enqueued twice. The key exists from
enqueue until the worker finishes the job, deferred and running included.

arq refuses an id while a *result* is kept for it too, so the worker must run with
``keep_result=0`` (see ``worker_settings``); ``enqueue`` also clears a stale result it finds.

The arq envelope is msgpack rather than arq's default pickle, so nothing read back from Redis is
ever unpickled. Producer and worker must agree on it: build the worker from ``worker_settings``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.worker import Retry
from redis.exceptions import RedisError

from pixelflow.core.errors import QueueUnavailable
from pixelflow.core.models import JobTask

logger = logging.getLogger(__name__)

PROCESS_JOB_FUNCTION = "process_job"

# arq counts every pick-up of a job, retries included; PixelFlow counts attempts in the store
# and decides itself when to stop, so arq's own limit only has to stay out of the way.
ARQ_MAX_TRIES = 1_000

Handler = Callable[[JobTask], Awaitable[None]]

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


def worker_settings(*, name: str) -> dict[str, Any]:
    """The arq ``Worker`` options this producer depends on; add functions, Redis and limits."""
    return {
        "queue_name": name,
        "keep_result": 0,
        "max_tries": ARQ_MAX_TRIES,
        "job_serializer": serialize_envelope,
        "job_deserializer": deserialize_envelope,
    }


@dataclass
class _Redelivery:
    """A running job's request to be delivered again (a retry scheduled by its own handler)."""

    job_id: str
    requested: bool = False
    delay: float = 0.0


_redelivery: contextvars.ContextVar[_Redelivery | None] = contextvars.ContextVar(
    "pixelflow_arq_redelivery", default=None
)


async def handle_payload(handler: Handler, payload: bytes) -> None:
    """Run ``handler`` on an arq job's payload: the body of the ``process_job`` worker function.

    arq keeps ``arq:job:<id>`` until a job finishes, so a handler cannot enqueue its own id
    again while it runs. Instead ``ArqQueue.enqueue`` notes the request (see ``_running``) and
    the job is handed back to arq with ``Retry(defer=delay)``, which keeps its id. The request
    stands even if the handler then fails, as it would with ``LocalQueue``.
    """
    task = decode_task(payload)
    with _running(task.job_id) as redelivery:
        try:
            await handler(task)
        except Exception:
            if not redelivery.requested:
                raise
            logger.exception("handler failed for job %s after scheduling a retry", task.job_id)
    if redelivery.requested:
        raise Retry(defer=redelivery.delay)


@contextmanager
def _running(job_id: str) -> Iterator[_Redelivery]:
    redelivery = _Redelivery(job_id)
    token = _redelivery.set(redelivery)
    try:
        yield redelivery
    finally:
        _redelivery.reset(token)


class ArqQueue:
    def __init__(
        self, redis: ArqRedis, *, name: str = "default", call_timeout: float = 2.0
    ) -> None:
        self.name = name
        self._redis = redis
        # redis-py has no read timeout here (arq sets only the connect timeout): bound each call.
        self._timeout = call_timeout

    @classmethod
    async def open(
        cls, redis_url: str, *, name: str = "default", call_timeout: float = 2.0
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
        return cls(redis, name=name, call_timeout=call_timeout)

    async def enqueue(self, task: JobTask, *, delay: float = 0.0) -> bool:
        redelivery = _redelivery.get()
        if redelivery is not None and redelivery.job_id == task.job_id:
            if redelivery.requested:
                return False
            redelivery.requested, redelivery.delay = True, delay
            return True
        async with self._redis_call():
            if await self._enqueue(task, delay):
                return True
            if await self._exists(job_key_prefix, in_progress_key_prefix, job_id=task.job_id):
                return False
            # Only a kept result stood in the way: the job is not pending, so clear it.
            await self._redis.delete(result_key_prefix + task.job_id)
            return await self._enqueue(task, delay)

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

    async def ping(self) -> None:
        async with self._redis_call():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()

    async def _enqueue(self, task: JobTask, delay: float) -> bool:
        job = await self._redis.enqueue_job(
            PROCESS_JOB_FUNCTION,
            encode_task(task),
            _job_id=task.job_id,
            _queue_name=self.name,
            _defer_by=delay if delay > 0 else None,
        )
        return job is not None

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
