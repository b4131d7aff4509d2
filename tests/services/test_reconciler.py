"""The reconciler re-derives the queue from the store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pixelflow.core.clock import utc_now
from pixelflow.core.models import JobTask, Transition
from pixelflow.core.states import JobStatus
from pixelflow.services import reconciler as reconciler_module
from tests.services.conftest import Services
from tests.services.test_processing import current, queued_job


async def claim(services: Services, job_id: str, *, lease: float) -> None:
    now = utc_now()
    claimed = await services.store.transition(
        Transition(
            job_id=job_id,
            expected=frozenset({JobStatus.QUEUED}),
            target=JobStatus.PROCESSING,
            at=now,
            begin_attempt=True,
            lease_expires_at=now + timedelta(seconds=lease),
        )
    )
    assert claimed is not None


async def test_expired_lease_is_requeued_and_enqueued(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    await claim(services, job.id, lease=-1)  # its worker died: the lease is already over
    report = await services.reconciler(requeue_grace=3600).run_once()
    assert report.recovered == 1
    requeued = await current(services, job.id)
    assert requeued.status is JobStatus.QUEUED and requeued.attempts == 1
    assert requeued.error is not None and requeued.error.code == "worker_lost"
    assert await services.queue.is_pending(job.id)

    # A second pass (or a second reconciler) finds nothing more to do.
    again = await services.reconciler(requeue_grace=3600).run_once()
    assert (again.recovered, again.reenqueued, again.failed) == (0, 0, 0)


async def test_live_lease_is_left_alone(services: Services, fixtures_dir: Path) -> None:
    job = await queued_job(services, fixtures_dir)
    await claim(services, job.id, lease=60)
    report = await services.reconciler().run_once()
    assert report.recovered == 0
    assert (await current(services, job.id)).status is JobStatus.PROCESSING


async def test_spent_attempts_fail_the_job(services: Services, fixtures_dir: Path) -> None:
    job = await queued_job(services, fixtures_dir)
    await claim(services, job.id, lease=-1)
    report = await services.reconciler(max_attempts=1).run_once()
    assert report.failed == 1
    failed = await current(services, job.id)
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "worker_lost"
    assert not await services.queue.is_pending(job.id)


async def test_queued_jobs_the_queue_lost_are_reenqueued_once(
    services: Services, fixtures_dir: Path
) -> None:
    lost = await queued_job(services, fixtures_dir)
    known = await queued_job(services, fixtures_dir)
    assert await services.queue.enqueue(JobTask(job_id=known.id))

    report = await services.reconciler(requeue_grace=0).run_once()
    assert report.reenqueued == 1
    assert await services.queue.is_pending(lost.id)

    # Freshly queued jobs are left to the API's own enqueue for a grace period.
    fresh = await queued_job(services, fixtures_dir)
    report = await services.reconciler(requeue_grace=3600).run_once()
    assert report.reenqueued == 0
    assert not await services.queue.is_pending(fresh.id)


async def test_a_pass_pages_through_more_jobs_than_one_page(
    services: Services, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog larger than a page: the jobs the queue still knows fill the first pages, and
    the lost ones behind them are re-enqueued all the same (no silent cut at the page size)."""
    monkeypatch.setattr(reconciler_module, "_PAGE", 2)
    known = [await queued_job(services, fixtures_dir) for _ in range(5)]
    for job in known:
        assert await services.queue.enqueue(JobTask(job_id=job.id))
    lost = [await queued_job(services, fixtures_dir) for _ in range(3)]
    expiring = [await queued_job(services, fixtures_dir) for _ in range(5)]
    for job in expiring:
        await claim(services, job.id, lease=-1)

    report = await services.reconciler(requeue_grace=0).run_once()
    assert report.recovered == 5
    assert report.reenqueued == 3
    for job in lost + expiring:
        assert await services.queue.is_pending(job.id)
        assert (await current(services, job.id)).status is JobStatus.QUEUED
