"""Builds the app context: reads the config URLs, picks adapters, owns their lifetimes.

This is the only module that knows which concrete adapter stands behind each Protocol.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pixelflow.adapters.dns.protocol import Resolver
from pixelflow.adapters.imaging.protocol import Imaging
from pixelflow.adapters.queue.protocol import Queue
from pixelflow.adapters.ratelimit.protocol import RateLimiter
from pixelflow.adapters.storage.protocol import ObjectStorage, SelfServedStorage, SourceFiles
from pixelflow.adapters.store.protocol import Store
from pixelflow.adapters.webhook.protocol import WebhookClient
from pixelflow.config import (
    ConfigError,
    Role,
    Settings,
    load_or_create_secret,
    make_private_dir,
)
from pixelflow.core import signing
from pixelflow.core.backoff import backoff
from pixelflow.core.errors import DatabaseUnavailable, Unavailable
from pixelflow.core.webhooks import RetryPolicy
from pixelflow.services.address_guard import AddressGuard
from pixelflow.services.dependency_watch import DependencyWatch
from pixelflow.services.deployment import DeploymentSettings
from pixelflow.services.jobs import JobService
from pixelflow.services.keys import KeyService
from pixelflow.services.objects import ObjectService
from pixelflow.services.policy import JobPolicy, WebhookPolicy, WorkerPolicy
from pixelflow.services.processing import Processor
from pixelflow.services.readiness import Ping
from pixelflow.services.reconciler import Reconciler
from pixelflow.services.sessions import SessionService
from pixelflow.services.usage import UsageService
from pixelflow.services.webhook_secrets import SigningSecrets
from pixelflow.services.webhooks import WebhookDeliverer
from pixelflow.telemetry.metrics import Metrics
from pixelflow.telemetry.tracing import Tracing, open_tracing

log = logging.getLogger(__name__)

# arq must never time a task out before the Processor does: it would re-run a live attempt.
_QUEUE_TIMEOUT_MARGIN = 30.0
# While a dependency is unreachable at start-up, try again after at most this long.
_STARTUP_RETRY_CAP = 30.0


@dataclass
class AppContext:
    settings: Settings
    metrics: Metrics
    tracing: Tracing
    store: Store
    queue: Queue
    storage: ObjectStorage
    sources: SourceFiles | None
    rate_limiter: RateLimiter
    jobs: JobService
    objects: ObjectService
    keys: KeyService
    usage: UsageService
    sessions: SessionService
    worker_policy: WorkerPolicy
    webhook_guard: AddressGuard
    webhook_secrets: SigningSecrets
    webhook_client: WebhookClient


def job_policy(settings: Settings) -> JobPolicy:
    return JobPolicy(
        max_steps=settings.max_steps,
        max_source_bytes=settings.max_source_bytes,
        presign_expiry=settings.presign_expiry,
        max_source_pixels=settings.max_source_pixels,
        pipeline_budget=settings.pipeline_budget,
    )


def webhook_policy(settings: Settings) -> WebhookPolicy:
    return WebhookPolicy(
        retry=RetryPolicy(
            max_attempts=settings.webhook_max_attempts,
            initial_backoff=settings.webhook_initial_backoff,
            max_backoff=settings.webhook_max_backoff,
        ),
        timeout=settings.webhook_timeout,
        batch=settings.webhook_concurrency,
        poll_interval=settings.webhook_poll_interval,
    )


def worker_policy(settings: Settings) -> WorkerPolicy:
    return WorkerPolicy(
        max_pixels=settings.max_source_pixels,
        max_source_bytes=settings.max_source_bytes,
        max_output_bytes=settings.max_output_bytes,
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
        if settings.role is Role.SERVE:
            # The database and the signing key live here: no other local user reads them.
            make_private_dir(settings.data_dir)
        tracing = await stack.enter_async_context(
            open_tracing(settings.traces_exporter, settings.service_name)
        )
        store = await _open_store(settings, stack)
        if settings.role in {Role.API, Role.WORKER}:
            # Processes that each hold one half of the webhook contract (serve holds both).
            await DeploymentSettings(store).agree_on_auth_mode(settings.auth)
        queue = await _open_queue(settings, stack)
        metrics.on_scrape(_queue_depth_reader(queue, metrics))
        storage = await _open_storage(settings, stack)
        sources = _open_sources(settings)
        rate_limiter = await _open_rate_limiter(settings, metrics, stack)
        resolver = _open_resolver(stack)
        guard = AddressGuard(resolver, allow_private=settings.webhook_allow_private)
        jobs = JobService(
            store=store,
            queue=queue,
            storage=storage,
            sources=sources,
            policy=job_policy(settings),
            guard=guard,
            tracer=tracing.tracer,
        )
        yield AppContext(
            settings=settings,
            metrics=metrics,
            tracing=tracing,
            store=store,
            queue=queue,
            storage=storage,
            sources=sources,
            rate_limiter=rate_limiter,
            jobs=jobs,
            objects=ObjectService(storage if isinstance(storage, SelfServedStorage) else None),
            keys=KeyService(store=store),
            usage=UsageService(store=store),
            sessions=SessionService(store=store),
            worker_policy=worker_policy(settings),
            webhook_guard=guard,
            webhook_secrets=SigningSecrets(store, shared=_shared_webhook_secret(settings)),
            webhook_client=_open_webhook_client(stack),
        )


@dataclass
class AdminContext:
    """What the operator commands (``pixelflow keys``, ``pixelflow usage``,
    ``pixelflow auth-mode``) need: the database alone."""

    store: Store
    keys: KeyService
    usage: UsageService
    deployment: DeploymentSettings


@contextlib.asynccontextmanager
async def open_admin_context(settings: Settings) -> AsyncIterator[AdminContext]:
    """The database alone. An operator command never creates a SQLite database: a typo in the
    data directory would otherwise give an empty key list, or keys no server reads."""
    if settings.database_url.startswith("sqlite"):
        from pixelflow.adapters.store.sqlite import sqlite_path

        path = sqlite_path(settings.database_url)
        if not await asyncio.to_thread(path.is_file):
            raise ConfigError(
                f"PIXELFLOW_DATABASE_URL: no database at {path} (set it, or point "
                "PIXELFLOW_DATA_DIR / --data-dir at a `pixelflow serve` data directory)"
            )
    async with contextlib.AsyncExitStack() as stack:
        store = await _open_store(settings, stack)
        yield AdminContext(
            store=store,
            keys=KeyService(store=store),
            usage=UsageService(store=store),
            deployment=DeploymentSettings(store),
        )


@contextlib.asynccontextmanager
async def open_context_when_reachable(
    settings: Settings, metrics: Metrics
) -> AsyncIterator[AppContext]:
    """``open_context``, waiting while a dependency cannot be reached: an outage at start-up is
    an outage like any other, so the process waits it out (capped backoff, one log line per
    dependency) instead of exiting. A configuration error still fails at once."""
    failures = 0
    waiting_for: str | None = None
    while True:
        stack = contextlib.AsyncExitStack()
        try:
            ctx = await stack.enter_async_context(open_context(settings, metrics))
            break
        except Unavailable as exc:
            await stack.aclose()
            if exc.code != waiting_for:
                log.warning("%s (%s): waiting for it before starting", exc.message, exc.code)
                waiting_for = exc.code
            failures += 1
            await asyncio.sleep(backoff(failures, base=0.5, cap=_STARTUP_RETRY_CAP))
    if waiting_for is not None:
        log.info("every dependency is reachable: starting")
    async with stack:
        yield ctx


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

    imaging = VipsImaging(workers=settings.worker_max_active_jobs, jpeg_shrink=settings.jpeg_shrink)
    try:
        yield imaging
    finally:
        await imaging.close()


def dependency_checks(ctx: AppContext) -> Mapping[str, Ping]:
    """What readiness means for a process of this context: every backend answers."""
    return {"database": ctx.store.ping, "queue": ctx.queue.ping, "storage": ctx.storage.ping}


def dependency_watch(ctx: AppContext) -> DependencyWatch:
    """Logs each outage of a dependency once and exports ``pixelflow_dependency_up``."""
    return DependencyWatch(dependency_checks(ctx), gauge=ctx.metrics.dependency_up)


def build_processor(ctx: AppContext, imaging: Imaging) -> Processor:
    ctx.metrics.watch_vips_memory(imaging.memory_in_use)
    return Processor(
        store=ctx.store,
        storage=ctx.storage,
        sources=ctx.sources,
        imaging=imaging,
        policy=ctx.worker_policy,
        metrics=ctx.metrics,
        tracer=ctx.tracing.tracer,
    )


def build_reconciler(ctx: AppContext) -> Reconciler:
    return Reconciler(
        store=ctx.store, queue=ctx.queue, policy=ctx.worker_policy, metrics=ctx.metrics
    )


def build_webhook_deliverer(ctx: AppContext) -> WebhookDeliverer:
    return WebhookDeliverer(
        store=ctx.store,
        client=ctx.webhook_client,
        guard=ctx.webhook_guard,
        secrets=ctx.webhook_secrets,
        policy=webhook_policy(ctx.settings),
        metrics=ctx.metrics,
        tracer=ctx.tracing.tracer,
    )


@contextlib.asynccontextmanager
async def run_webhook_delivery(ctx: AppContext) -> AsyncIterator[WebhookDeliverer]:
    """Deliver due webhooks in the background until the block ends."""
    deliverer = build_webhook_deliverer(ctx)
    task = asyncio.create_task(deliverer.run_forever(), name="webhook-delivery")
    try:
        yield deliverer
    finally:
        # Attempts in flight get their timeout to finish and be recorded; one cut short is
        # sent again once its claim expires.
        deliverer.stop()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=ctx.settings.webhook_timeout + 1)


def _shared_webhook_secret(settings: Settings) -> str | None:
    """The secret that signs every event, or None when each user has their own (api_key)."""
    if settings.auth == "api_key":
        return None
    if settings.webhook_signing_secret is not None:
        return settings.webhook_signing_secret
    # Only `serve` gets here (config requires the variable elsewhere): one made once and kept
    # in the data directory, so receivers keep verifying across restarts.
    key = load_or_create_secret(settings.data_dir / "webhook-signing.key")
    return signing.SECRET_PREFIX + base64.b64encode(key).decode()


def _queue_depth_reader(queue: Queue, metrics: Metrics) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        metrics.queue_depth.labels(queue.name).set(await queue.depth())

    return refresh


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

        queue = await ArqQueue.open(
            settings.redis_url,
            name=settings.queue_name,
            task_timeout=settings.worker_job_timeout + _QUEUE_TIMEOUT_MARGIN,
        )
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


def _open_resolver(stack: contextlib.AsyncExitStack) -> Resolver:
    from pixelflow.adapters.dns.threaded import ThreadedResolver

    resolver = ThreadedResolver()
    stack.push_async_callback(resolver.aclose)
    return resolver


def _open_webhook_client(stack: contextlib.AsyncExitStack) -> WebhookClient:
    from pixelflow.adapters.webhook.aiohttp_client import AiohttpWebhookClient

    client = AiohttpWebhookClient()
    stack.push_async_callback(client.aclose)
    return client


def _open_sources(settings: Settings) -> SourceFiles | None:
    if settings.local_source_root is None:
        return None
    from pixelflow.adapters.storage.local_source import LocalSourceRoot

    return LocalSourceRoot(settings.local_source_root, private=_private_paths(settings))


def _private_paths(settings: Settings) -> tuple[Path, ...]:
    """What a ``local_file`` job must never read even when it lies under the source root: the
    data directory (database, signing key, every job's objects), plus the database file and
    the object directory wherever their URLs put them."""
    paths = [settings.data_dir]
    if settings.database_url.startswith("sqlite"):
        paths.append(_file_path(settings.database_url))
    if settings.storage_url.startswith("file://"):
        paths.append(_file_path(settings.storage_url))
    return tuple(paths)


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
