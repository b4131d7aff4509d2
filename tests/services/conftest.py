"""Services wired to real adapters: SQLite, a local object directory, libvips, the local queue."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pixelflow.adapters.imaging.protocol import (
    Emit,
    ImageLimits,
    Imaging,
    Rendered,
    StepObserver,
)
from pixelflow.adapters.imaging.vips import VipsImaging
from pixelflow.adapters.queue.local import LocalQueue
from pixelflow.adapters.storage.local import LocalObjectStorage
from pixelflow.adapters.storage.local_source import LocalSourceRoot
from pixelflow.adapters.storage.protocol import ObjectStorage
from pixelflow.adapters.store.sqlite import SqliteStore
from pixelflow.core.errors import StorageUnavailable
from pixelflow.core.models import Step
from pixelflow.services.policy import WorkerPolicy
from pixelflow.services.processing import Processor
from pixelflow.services.reconciler import Reconciler
from pixelflow.telemetry.metrics import Metrics


class FlakyStorage:
    """Real local storage whose ``get`` fails the first ``failures`` times, as an unreachable
    S3 would."""

    def __init__(self, inner: ObjectStorage, failures: int, error: Exception | None = None) -> None:
        self.inner = inner
        self.failures = failures
        self.error = error or StorageUnavailable("object storage is unavailable")
        self.gets = 0

    async def get(
        self, key: str, *, max_bytes: int | None = None, if_match: str | None = None
    ) -> bytes:
        self.gets += 1
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        return await self.inner.get(key, max_bytes=max_bytes, if_match=if_match)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class SlowStorage:
    """Real local storage whose ``get`` never answers, as a hung S3 connection would."""

    def __init__(self, inner: ObjectStorage) -> None:
        self.inner = inner

    async def get(
        self, key: str, *, max_bytes: int | None = None, if_match: str | None = None
    ) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class GatedImaging:
    """Real libvips rendering that waits for ``gate`` first, so a test can act mid-attempt."""

    def __init__(self, inner: Imaging) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def render(
        self,
        source: bytes,
        pipeline: list[Step],
        limits: ImageLimits,
        *,
        on_step: StepObserver | None = None,
        emit: Emit | None = None,
    ) -> list[Rendered]:
        self.entered.set()
        await self.gate.wait()
        return await self.inner.render(source, pipeline, limits, on_step=on_step, emit=emit)

    def memory_in_use(self) -> int | None:
        return self.inner.memory_in_use()

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Services:
    store: SqliteStore
    storage: LocalObjectStorage
    sources: LocalSourceRoot
    imaging: VipsImaging
    queue: LocalQueue
    metrics: Metrics

    def processor(
        self,
        *,
        storage: object | None = None,
        imaging: Imaging | None = None,
        **policy: float,
    ) -> Processor:
        return Processor(
            store=self.store,
            storage=storage or self.storage,  # type: ignore[arg-type]
            sources=self.sources,
            imaging=imaging or self.imaging,
            policy=WorkerPolicy(retry_backoff=0.01, retry_max_backoff=0.05, **policy),  # type: ignore[arg-type]
            metrics=self.metrics,
        )

    def reconciler(self, **policy: float) -> Reconciler:
        return Reconciler(
            store=self.store,
            queue=self.queue,
            policy=WorkerPolicy(**policy),  # type: ignore[arg-type]
            metrics=self.metrics,
        )


@pytest.fixture
async def services(tmp_path: Path, fixtures_dir: Path) -> AsyncIterator[Services]:
    sources = tmp_path / "sources"
    sources.mkdir()
    for name in ("rocket.jpg", "bad-truncated.jpg"):
        shutil.copyfile(fixtures_dir / name, sources / name)
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    storage = await LocalObjectStorage.open(
        tmp_path / "objects", public_url="http://t", secret=b"k"
    )
    imaging = VipsImaging(workers=1)
    queue = LocalQueue()
    try:
        yield Services(
            store=store,
            storage=storage,
            sources=LocalSourceRoot(sources),
            imaging=imaging,
            queue=queue,
            metrics=Metrics(),
        )
    finally:
        await queue.close()
        await imaging.close()
        await store.close()
