"""Two attempts of one job racing on PostgreSQL, with real adapters (Postgres store, local object
storage, libvips): the attempt that was taken over finishes LAST, and must not take the winner's
outputs away. Before the fix, its refused final update deleted the deterministic output keys
the winning attempt had just committed as the job's outputs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from pixelflow.adapters.imaging.vips import VipsImaging
from pixelflow.adapters.queue.local import LocalQueue
from pixelflow.adapters.storage.local import LocalObjectStorage
from pixelflow.adapters.store.postgres import PostgresStore
from pixelflow.core.clock import utc_now
from pixelflow.core.models import Job, JobTask, Transition
from pixelflow.core.states import JobStatus
from pixelflow.services.policy import WorkerPolicy
from pixelflow.services.processing import Processor
from pixelflow.services.reconciler import Reconciler
from pixelflow.telemetry.metrics import Metrics
from tests.services.conftest import GatedImaging
from tests.support.postgres import temporary_database
from tests.support.queued_jobs import queued_upload

PIPELINE = [
    {"id": "small", "action": "resize", "width": 64, "format": "png"},
    {"id": "gray", "action": "resize", "width": 32, "format": "webp"},
]


class Rig:
    def __init__(self, store: PostgresStore, storage: LocalObjectStorage, imaging: VipsImaging):
        self.store = store
        self.storage = storage
        self.imaging = imaging
        self.metrics = Metrics()

    def processor(self, imaging: object | None = None, **policy: float) -> Processor:
        return Processor(
            store=self.store,
            storage=self.storage,
            sources=None,
            imaging=imaging or self.imaging,  # type: ignore[arg-type]
            policy=WorkerPolicy(**policy),  # type: ignore[arg-type]
            metrics=self.metrics,
        )

    def reconciler(self, *, ahead: float, **policy: float) -> Reconciler:
        """A reconciler whose clock runs ``ahead`` seconds fast: it sees leases as expired."""
        return Reconciler(
            store=self.store,
            queue=LocalQueue(),
            policy=WorkerPolicy(**policy),  # type: ignore[arg-type]
            metrics=self.metrics,
            clock=lambda: utc_now() + timedelta(seconds=ahead),
        )

    async def queued_job(self, data: bytes) -> Job:
        return await queued_upload(self.store, self.storage, PIPELINE, data)

    async def job(self, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        assert job is not None
        return job


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with temporary_database("pixelflow_race") as dsn:
        store = await PostgresStore.open(dsn, max_size=4)
        imaging = VipsImaging(workers=2)
        try:
            yield Rig(
                store,
                await LocalObjectStorage.open(
                    tmp_path / "objects", public_url="http://t", secret=b"k"
                ),
                imaging,
            )
        finally:
            await imaging.close()
            await store.close()


async def test_a_taken_over_attempt_finishing_last_leaves_the_winners_outputs(
    rig: Rig, fixtures_dir: Path
) -> None:
    data = (fixtures_dir / "rocket.jpg").read_bytes()
    job = await rig.queued_job(data)

    # Attempt 1 claims the job and stalls before rendering. Its lease is long, so its own
    # heartbeat (every lease/3) does not notice the takeover before it finishes.
    stale_imaging = GatedImaging(rig.imaging)
    stale = asyncio.create_task(
        rig.processor(stale_imaging, lease_seconds=600).process(JobTask(job_id=job.id))
    )
    await asyncio.wait_for(stale_imaging.entered.wait(), 10)

    # Another worker's reconciler finds the lease expired and puts the job back.
    report = await rig.reconciler(ahead=3600).run_once()
    assert report.recovered == 1
    # Attempt 2 takes the job and finishes it.
    winner = await rig.processor().process(JobTask(job_id=job.id))
    assert winner.outcome == "succeeded"
    succeeded = await rig.job(job.id)
    assert succeeded.status is JobStatus.SUCCEEDED and succeeded.attempts == 2
    winners_bytes = {o.object_key: await rig.storage.get(o.object_key) for o in succeeded.outputs}

    # Now the taken-over attempt renders and writes the same keys, after the winner, and its
    # final update is refused.
    stale_imaging.gate.set()
    loser = await asyncio.wait_for(stale, 60)
    assert loser.outcome == "abandoned"

    final = await rig.job(job.id)
    assert final.status is JobStatus.SUCCEEDED and final.attempts == 2
    assert sorted(o.step_id for o in final.outputs) == ["gray", "small"]
    for output in final.outputs:
        # Every output the job points at exists, with the bytes it had when the job succeeded
        # (the late writer wrote identical bytes: same source, same pipeline).
        assert await rig.storage.size(output.object_key) == output.bytes
        assert await rig.storage.get(output.object_key) == winners_bytes[output.object_key]
    assert await rig.store.get_usage(job.id) is not None


class GatedFinish:
    """The real Postgres store, whose ``succeeded`` transition waits for ``gate``: the attempt
    has written its outputs and is about to commit them."""

    def __init__(self, inner: PostgresStore) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def transition(self, change: Transition) -> Job | None:
        if change.target is JobStatus.SUCCEEDED:
            self.waiting.set()
            await self.gate.wait()
        return await self.inner.transition(change)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_void_attempt_never_deletes_what_a_live_attempt_is_committing(
    rig: Rig, fixtures_dir: Path
) -> None:
    """The data loss the issue reproduced: the taken-over attempt's final update is refused
    while the winner has written its outputs but not yet committed them; the old code saw a job
    still ``processing`` and deleted the keys the winner then committed."""
    job = await rig.queued_job((fixtures_dir / "rocket.jpg").read_bytes())
    stale_imaging = GatedImaging(rig.imaging)
    stale = asyncio.create_task(
        rig.processor(stale_imaging, lease_seconds=600).process(JobTask(job_id=job.id))
    )
    await asyncio.wait_for(stale_imaging.entered.wait(), 10)
    assert (await rig.reconciler(ahead=3600).run_once()).recovered == 1

    gated_store = GatedFinish(rig.store)
    winner_processor = rig.processor()
    winner_processor.store = gated_store  # type: ignore[assignment]
    winner = asyncio.create_task(winner_processor.process(JobTask(job_id=job.id)))
    await asyncio.wait_for(gated_store.waiting.wait(), 30)  # outputs written, not committed

    stale_imaging.gate.set()  # the stale attempt writes the same keys and is refused
    assert (await asyncio.wait_for(stale, 60)).outcome == "abandoned"
    gated_store.gate.set()
    assert (await asyncio.wait_for(winner, 30)).outcome == "succeeded"

    final = await rig.job(job.id)
    assert final.status is JobStatus.SUCCEEDED and len(final.outputs) == 2
    for output in final.outputs:
        assert await rig.storage.size(output.object_key) == output.bytes


async def test_a_void_attempt_of_a_failed_job_deletes_its_outputs(
    rig: Rig, fixtures_dir: Path
) -> None:
    """The other half of the rule: a job that ended failed can never gain outputs, so the
    losing attempt removes what it wrote."""
    job = await rig.queued_job((fixtures_dir / "rocket.jpg").read_bytes())
    stale_imaging = GatedImaging(rig.imaging)
    stale = asyncio.create_task(
        rig.processor(stale_imaging, lease_seconds=600).process(JobTask(job_id=job.id))
    )
    await asyncio.wait_for(stale_imaging.entered.wait(), 10)
    # Attempts spent: the reconciler fails the job instead of requeueing it.
    report = await rig.reconciler(ahead=3600, max_attempts=1).run_once()
    assert report.failed == 1

    stale_imaging.gate.set()
    assert (await asyncio.wait_for(stale, 60)).outcome == "abandoned"
    final = await rig.job(job.id)
    assert final.status is JobStatus.FAILED and final.outputs == []
    for key in (f"outputs/{job.id}/small.png", f"outputs/{job.id}/gray.webp"):
        assert await rig.storage.size(key) is None
