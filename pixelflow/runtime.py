"""Builds the app context: reads the config URLs, picks adapters, owns their lifetimes.

This is the only module that knows which concrete adapter stands behind each Protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pixelflow.adapters.imaging.protocol import Imaging
from pixelflow.adapters.queue.protocol import Queue
from pixelflow.adapters.ratelimit.protocol import RateLimiter
from pixelflow.adapters.storage.protocol import ObjectStorage, SelfServedStorage, SourceFiles
from pixelflow.adapters.store.protocol import Store
from pixelflow.config import Settings, load_or_create_secret
from pixelflow.core.errors import DatabaseUnavailable
from pixelflow.services.jobs import JobService
from pixelflow.services.objects import ObjectService
from pixelflow.services.policy import JobPolicy, WorkerPolicy
from pixelflow.services.processing import Processor
from pixelflow.services.reconciler import Reconciler
from pixelflow.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    settings: Settings
    metrics: Metrics
    store: Store
    queue: Queue
    storage: ObjectStorage
    sources: SourceFiles | None
    rate_limiter: RateLimiter
    jobs: JobService
    objects: ObjectService
    worker_policy: WorkerPolicy


def job_policy(settings: Settings) -> JobPolicy:
    return JobPolicy(
        max_steps=settings.max_steps,
        max_source_bytes=settings.max_source_bytes,
        presign_expiry=settings.presign_expiry,
        webhook_allow_private=settings.webhook_allow_private,
    )


def worker_policy(settings: Settings) -> WorkerPolicy:
    return WorkerPolicy(
        max_pixels=settings.max_source_pixels,
        max_source_bytes=settings.max_source_bytes,
        max_attempts=settings.worker_max_attempts,
        job_timeout=settings.worker_job_timeout,
        max_active_jobs=settings.worker_max_active_jobs,
        retry_backoff=settings.worker_retry_backoff,
        retry_max_backoff=settings.worker_retry_max_backoff,
        lease_seconds=settings.worker_lease_seconds,
        requeue_grace=max(2 * settings.reconcile_interval, 5.0),
    )


@contextlib.asynccontextmanager
async def open_context(settings: Settings, metrics: Metrics) -> AsyncIterator[AppContext]:
    """Open every adapter the settings name; close them all, in reverse, on exit."""
    async with contextlib.AsyncExitStack() as stack:
        store = await _open_store(settings, stack)
        queue = await _open_queue(settings, stack)
        storage = await _open_storage(settings, stack)
        sources = _open_sources(settings)
        rate_limiter = await _open_rate_limiter(settings, metrics, stack)
        jobs = JobService(
            store=store, queue=queue, storage=storage, sources=sources, policy=job_policy(settings)
        )
        yield AppContext(
            settings=settings,
            metrics=metrics,
            store=store,
            queue=queue,
            storage=storage,
            sources=sources,
            rate_limiter=rate_limiter,
            jobs=jobs,
            objects=ObjectService(storage if isinstance(storage, SelfServedStorage) else None),
            worker_policy=worker_policy(settings),
        )


async def migrate_database(settings: Settings) -> list[str]:
    """Bring the configured database's schema up to date; the migrations applied."""
    if settings.database_url.startswith("sqlite"):
        from pixelflow.adapters.store.sqlite import SqliteStore

        store = await SqliteStore.open(settings.database_url)
        await store.close()  # the SQLite store creates its schema when it opens
        return []
    from pixelflow.adapters.store.migrations import migrate_dsn

    try:
        return await migrate_dsn(settings.database_url)
    except (OSError, TimeoutError) as exc:
        raise DatabaseUnavailable("cannot connect to PostgreSQL") from exc


@contextlib.asynccontextmanager
async def open_imaging(settings: Settings) -> AsyncIterator[Imaging]:
    from pixelflow.adapters.imaging.vips import VipsImaging

    imaging = VipsImaging(workers=settings.worker_max_active_jobs)
    try:
        yield imaging
    finally:
        await imaging.close()


def build_processor(ctx: AppContext, imaging: Imaging) -> Processor:
    return Processor(
        store=ctx.store,
        storage=ctx.storage,
        sources=ctx.sources,
        imaging=imaging,
        policy=ctx.worker_policy,
        metrics=ctx.metrics,
    )


def build_reconciler(ctx: AppContext) -> Reconciler:
    return Reconciler(
        store=ctx.store, queue=ctx.queue, policy=ctx.worker_policy, metrics=ctx.metrics
    )


# -- adapter selection -------------------------------------------------------------------------


def _file_path(url: str) -> Path:
    """``file:///abs`` → a Path (``file://./rel`` is relative). SQLite URLs are the SQLite
    store's own to parse (``sqlite_path``)."""
    return Path(url.removeprefix("file://")).expanduser().resolve()


async def _open_store(settings: Settings, stack: contextlib.AsyncExitStack) -> Store:
    url = settings.database_url
    if url.startswith("sqlite"):
        from pixelflow.adapters.store.sqlite import SqliteStore

        store: Store = await SqliteStore.open(url)
    else:
        from pixelflow.adapters.store.postgres import PostgresStore

        store = await PostgresStore.open(url)
    stack.push_async_callback(store.close)
    return store


async def _open_queue(settings: Settings, stack: contextlib.AsyncExitStack) -> Queue:
    if settings.redis_url is None:
        from pixelflow.adapters.queue.local import LocalQueue

        queue: Queue = LocalQueue(settings.queue_name)
    else:
        from pixelflow.adapters.queue.arq import ArqQueue

        queue = await ArqQueue.open(settings.redis_url, name=settings.queue_name)
    stack.push_async_callback(queue.close)
    return queue


async def _open_storage(settings: Settings, stack: contextlib.AsyncExitStack) -> ObjectStorage:
    url = settings.storage_url
    if url.startswith("file://"):
        from pixelflow.adapters.storage.local import LocalObjectStorage

        # File I/O (and maybe a directory to create): off the event loop, like all file I/O.
        secret = settings.local_signing_secret or await asyncio.to_thread(
            load_or_create_secret, settings.data_dir / "signing.key"
        )
        root = await asyncio.to_thread(_file_path, url)  # resolve() reads the file system
        storage: ObjectStorage = await LocalObjectStorage.open(
            root, public_url=settings.public_url, secret=secret
        )
    else:
        from pixelflow.adapters.storage.s3 import S3ObjectStorage

        parts = urlsplit(url)
        storage = await S3ObjectStorage.open(
            parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint_url=settings.s3_endpoint_url,
        )
    stack.push_async_callback(storage.close)
    return storage


def _open_sources(settings: Settings) -> SourceFiles | None:
    if settings.local_source_root is None:
        return None
    from pixelflow.adapters.storage.local_source import LocalSourceRoot

    return LocalSourceRoot(settings.local_source_root)


async def _open_rate_limiter(
    settings: Settings, metrics: Metrics, stack: contextlib.AsyncExitStack
) -> RateLimiter:
    if settings.redis_url is None:
        from pixelflow.adapters.ratelimit.memory import MemoryRateLimiter

        limiter: RateLimiter = MemoryRateLimiter()
    else:
        from pixelflow.adapters.ratelimit.redis import RedisRateLimiter

        limiter = await RedisRateLimiter.open(
            settings.redis_url,
            fail_open=settings.rate_limit_fail_open,
            on_fail_open=metrics.rate_limit_fail_open.inc,
        )
    stack.push_async_callback(limiter.close)
    return limiter
