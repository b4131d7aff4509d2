"""JobService refusals that the API cannot reach on serve's defaults, on real adapters."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pixelflow.adapters.dns.threaded import ThreadedResolver
from pixelflow.core.errors import Conflict, InvalidInput
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
