"""JobService refusals that the API cannot reach on serve's defaults, on real adapters."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pixelflow.adapters.dns.threaded import ThreadedResolver
from pixelflow.core.errors import Conflict, InvalidInput, NotFound
from pixelflow.core.models import JobTask, Transition
from pixelflow.core.states import JobStatus
from pixelflow.core.wire import CreateJobRequest
from pixelflow.services.address_guard import AddressGuard
from pixelflow.services.jobs import JobService
from pixelflow.services.policy import JobPolicy
from tests.services.conftest import GatedImaging, Services
from tests.services.test_processing import current, queued_job

CONVERT = [{"id": "a", "action": "convert"}]


def job_service(services: Services, *, with_sources: bool = True) -> JobService:
    return JobService(
        store=services.store,
        queue=services.queue,
        storage=services.storage,
        sources=services.sources if with_sources else None,
        policy=JobPolicy(),
        # No test here names a webhook: the resolver's pool never starts a thread.
        guard=AddressGuard(ThreadedResolver(), allow_private=False),
    )


def request(**fields: Any) -> CreateJobRequest:
    return msgspec.convert({"pipeline": CONVERT, **fields}, type=CreateJobRequest)


async def test_local_file_without_a_source_root_is_disabled(services: Services) -> None:
    jobs = job_service(services, with_sources=False)
    with pytest.raises(InvalidInput) as caught:
        await jobs.create("u", request(source_type="local_file", object_key="rocket.jpg"))
    assert caught.value.code == "local_file_disabled"
    assert "PIXELFLOW_LOCAL_SOURCE_ROOT" in caught.value.message


async def test_a_cancel_that_keeps_losing_the_race_is_job_busy(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = job_service(services)
    created = await jobs.create("u", request(source_type="s3_presigned"))

    async def always_moved(transition: Transition) -> None:
        return None  # another writer changed the job every time

    monkeypatch.setattr(services.store, "transition", always_moved)
    with pytest.raises(Conflict) as caught:
        await jobs.cancel("u", created.job_id)
    assert caught.value.code == "job_busy"


async def test_a_worker_stopping_mid_attempt_hands_the_job_back(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    gated = GatedImaging(services.imaging)
    attempt = asyncio.create_task(services.processor(imaging=gated).process(JobTask(job_id=job.id)))
    await asyncio.wait_for(gated.entered.wait(), 10)
    attempt.cancel()  # what a shutdown does to in-flight attempts
    with pytest.raises(asyncio.CancelledError):
        await attempt
    handed_back = await current(services, job.id)
    assert handed_back.status is JobStatus.QUEUED
    assert handed_back.error is not None and handed_back.error.code == "worker_stopped"


# -- start, for a job this service created ---------------------------------------------------


class _CountingReads:
    """The real store, counting the reads of a job (the step start skips when it can)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.reads = 0

    async def get_job(self, job_id: str, *, user_id: str | None = None) -> Any:
        self.reads += 1
        return await self._store.get_job(job_id, user_id=user_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _counting_service(services: Services) -> tuple[JobService, _CountingReads]:
    jobs = job_service(services)
    counted = _CountingReads(services.store)
    jobs.store = counted
    return jobs, counted


async def test_starting_a_job_created_here_does_not_read_it_back(services: Services) -> None:
    jobs, counted = _counting_service(services)
    created = await jobs.create("u", request(source_type="local_file", object_key="rocket.jpg"))
    started = await jobs.start("u", created.job_id)
    assert (started.state, started.status) == ("enqueued", JobStatus.QUEUED)
    assert counted.reads == 0
    assert await services.queue.depth() == 1
    # Started once: a second start reads the job and finds it queued.
    again = await jobs.start("u", created.job_id)
    assert (again.state, counted.reads) == ("already_started", 1)
    assert await services.queue.depth() == 1


async def test_a_failed_source_check_is_answered_as_before(
    services: Services, tmp_path: Path
) -> None:
    jobs, _ = _counting_service(services)
    moved = tmp_path / "sources" / "moved.jpg"  # the fixture's source root
    moved.write_bytes((tmp_path / "sources" / "rocket.jpg").read_bytes())
    created = await jobs.create("u", request(source_type="local_file", object_key="moved.jpg"))
    moved.unlink()
    with pytest.raises(Conflict) as caught:
        await jobs.start("u", created.job_id)
    assert caught.value.code == "source_missing"
    assert (await current(services, created.job_id)).status is JobStatus.CREATED


async def test_a_job_started_elsewhere_with_its_source_gone_is_already_started(
    services: Services, tmp_path: Path
) -> None:
    """Another API process started it, then the file went: this process, which created the
    job, answers from the job's status, as it would without having created it."""
    here, there = job_service(services), job_service(services)
    moved = tmp_path / "sources" / "moved.jpg"
    moved.write_bytes((tmp_path / "sources" / "rocket.jpg").read_bytes())
    created = await here.create("u", request(source_type="local_file", object_key="moved.jpg"))
    await there.start("u", created.job_id)
    moved.unlink()
    started = await here.start("u", created.job_id)
    assert (started.state, started.status) == ("already_started", JobStatus.QUEUED)
    assert await services.queue.depth() == 1


async def test_a_job_canceled_before_start_is_not_started(services: Services) -> None:
    jobs = job_service(services)
    created = await jobs.create("u", request(source_type="local_file", object_key="rocket.jpg"))
    await jobs.cancel("u", created.job_id)
    with pytest.raises(Conflict) as caught:
        await jobs.start("u", created.job_id)
    assert caught.value.code == "job_not_startable"
    assert await services.queue.depth() == 0


async def test_another_users_start_is_not_found_and_the_owner_still_starts(
    services: Services,
) -> None:
    jobs = job_service(services)
    created = await jobs.create("u", request(source_type="local_file", object_key="rocket.jpg"))
    with pytest.raises(NotFound):
        await jobs.start("intruder", created.job_id)
    assert (await jobs.start("u", created.job_id)).state == "enqueued"


async def test_jobs_remembered_for_start_are_bounded(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pixelflow.services.jobs._UNSTARTED_LIMIT", 2)
    jobs, counted = _counting_service(services)
    ids = [
        (await jobs.create("u", request(source_type="local_file", object_key="rocket.jpg"))).job_id
        for _ in range(3)
    ]
    assert len(jobs._unstarted) == 2
    # The oldest was forgotten: it is read from the store, and starts all the same.
    assert (await jobs.start("u", ids[0])).state == "enqueued"
    assert counted.reads == 1
    assert (await jobs.start("u", ids[2])).state == "enqueued"
    assert counted.reads == 1
