"""What a job does outside its libvips slot: fetching its source before it, and writing its
last output after it, so another job's render overlaps both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pixelflow.adapters.storage.protocol import ObjectStorage
from pixelflow.core.errors import StorageUnavailable
from pixelflow.core.models import JobTask
from pixelflow.core.states import JobStatus
from tests.services.conftest import GatedImaging, Services
from tests.services.test_processing import current, queued_job

TWO_OUTPUTS = [
    {"id": "big", "action": "resize", "width": 96, "format": "jpeg"},
    {"id": "small", "action": "resize", "width": 48, "format": "png"},
]


class GatedWrites:
    """Real storage whose first ``put`` waits for ``gate`` (unless ``entered`` is already set)
    and whose ``fail_at``-th put fails as an unreachable S3 would."""

    def __init__(self, inner: ObjectStorage, *, fail_at: int | None = None) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail_at = fail_at
        self.gets = 0
        self.second_get = asyncio.Event()
        self.puts = 0

    async def get(
        self, key: str, *, max_bytes: int | None = None, if_match: str | None = None
    ) -> bytes:
        self.gets += 1
        if self.gets == 2:
            self.second_get.set()
        return await self.inner.get(key, max_bytes=max_bytes, if_match=if_match)

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self.puts += 1
        if self.puts == self.fail_at:
            raise StorageUnavailable("object storage is unavailable")
        if not self.entered.is_set():
            self.entered.set()
            await self.gate.wait()
        await self.inner.put(key, data, content_type=content_type)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_the_slot_is_free_while_the_last_output_is_written(
    services: Services, fixtures_dir: Path
) -> None:
    first = await queued_job(services, fixtures_dir)
    second = await queued_job(services, fixtures_dir)
    storage = GatedWrites(services.storage)
    processor = services.processor(storage=storage, max_active_jobs=1)

    writing = asyncio.create_task(processor.process(JobTask(job_id=first.id)))
    try:
        await asyncio.wait_for(storage.entered.wait(), 30)
        # One slot in all, and the first job's write is stuck: the second renders anyway.
        done = await asyncio.wait_for(processor.process(JobTask(job_id=second.id)), 10)
        assert done.outcome == "succeeded"
        assert not writing.done()
        assert (await current(services, first.id)).status is JobStatus.PROCESSING
    finally:
        storage.gate.set()  # on failure too: the first job's thread must be able to end
    assert (await asyncio.wait_for(writing, 30)).outcome == "succeeded"
    finished = await current(services, first.id)
    assert finished.status is JobStatus.SUCCEEDED and len(finished.outputs) == 1


async def test_a_job_waiting_for_a_slot_has_already_fetched_its_source(
    services: Services, fixtures_dir: Path
) -> None:
    first = await queued_job(services, fixtures_dir)
    second = await queued_job(services, fixtures_dir)
    storage = GatedWrites(services.storage)
    storage.entered.set()  # writes pass straight through
    gated = GatedImaging(services.imaging)
    processor = services.processor(storage=storage, imaging=gated, max_active_jobs=1)

    rendering = asyncio.create_task(processor.process(JobTask(job_id=first.id)))
    await asyncio.wait_for(gated.entered.wait(), 30)
    waiting = asyncio.create_task(processor.process(JobTask(job_id=second.id)))
    # The second job's source is read while the first job holds the only slot.
    await asyncio.wait_for(storage.second_get.wait(), 30)
    assert not waiting.done()

    gated.gate.set()
    results = await asyncio.wait_for(asyncio.gather(rendering, waiting), 30)
    assert [result.outcome for result in results] == ["succeeded", "succeeded"]


@pytest.mark.parametrize("fail_at", [1, 2])
async def test_a_failed_write_fails_the_attempt_with_its_error(
    services: Services, fixtures_dir: Path, fail_at: int
) -> None:
    # The renderer goes on while an output uploads: a write that fails is reported at the next
    # output or, for the last one, after the render; either way the attempt is retried and no
    # output is recorded.
    job = await queued_job(services, fixtures_dir, pipeline=TWO_OUTPUTS)
    storage = GatedWrites(services.storage, fail_at=fail_at)
    storage.entered.set()
    result = await services.processor(storage=storage, max_attempts=5).process(
        JobTask(job_id=job.id)
    )
    assert result.outcome == "retry"
    assert result.error is not None and result.error.code == "storage_unavailable"
    stored = await current(services, job.id)
    assert stored.status is JobStatus.QUEUED and stored.outputs == []
