"""One processing attempt: retries, permanent failures, cancel and lease takeover mid-attempt."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from pixelflow.adapters.storage.protocol import ObjectStorage
from pixelflow.adapters.store.protocol import Store
from pixelflow.core.backoff import backoff
from pixelflow.core.clock import utc_now
from pixelflow.core.errors import StorageUnavailable
from pixelflow.core.models import Job, JobTask, Transition
from pixelflow.core.states import JobStatus
from pixelflow.services.policy import WorkerPolicy
from pixelflow.services.processing import Processor
from tests.services.conftest import FlakyStorage, GatedImaging, Services, SlowStorage
from tests.support.queued_jobs import queued_upload

RESIZE = [{"id": "small", "action": "resize", "width": 64, "format": "png"}]


async def queued_job(
    services: Services,
    fixtures_dir: Path,
    *,
    source: str = "rocket.jpg",
    uploaded: bool = True,
    pipeline: list[dict[str, object]] = RESIZE,
) -> Job:
    data = (fixtures_dir / source).read_bytes() if uploaded else None
    return await queued_upload(services.store, services.storage, pipeline, data)


async def current(services: Services, job_id: str) -> Job:
    job = await services.store.get_job(job_id)
    assert job is not None
    return job


async def cancel_processing(services: Services, job_id: str) -> None:
    """Cancel a job mid-attempt, as the API does."""
    canceled = await services.store.transition(
        Transition(
            job_id=job_id,
            expected=frozenset({JobStatus.PROCESSING}),
            target=JobStatus.CANCELED,
            at=utc_now(),
        )
    )
    assert canceled is not None


async def test_transient_failures_retry_with_backoff_then_succeed(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    flaky = FlakyStorage(services.storage, failures=2)
    processor = services.processor(storage=flaky)

    for attempt in (1, 2):
        result = await processor.process(JobTask(job_id=job.id))
        assert result.outcome == "retry" and result.retry_in > 0
        assert result.error is not None and result.error.code == "storage_unavailable"
        stored = await current(services, job.id)
        assert stored.status is JobStatus.QUEUED and stored.attempts == attempt
        assert stored.error is not None and stored.error.code == "storage_unavailable"
        assert stored.run_after is not None and stored.run_after > stored.updated_at

    result = await processor.process(JobTask(job_id=job.id))
    assert result.outcome == "succeeded"
    done = await current(services, job.id)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 3
    assert done.error is None
    assert [(o.width, o.format) for o in done.outputs] == [(64, "png")]
    usage = await services.store.get_usage(job.id)
    assert usage is not None and usage.bytes_in == (fixtures_dir / "rocket.jpg").stat().st_size


async def test_exhausted_attempts_fail_with_the_last_error(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    processor = services.processor(
        storage=FlakyStorage(services.storage, failures=99), max_attempts=2
    )
    assert (await processor.process(JobTask(job_id=job.id))).outcome == "retry"
    assert (await processor.process(JobTask(job_id=job.id))).outcome == "failed"
    failed = await current(services, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 2
    assert failed.error is not None and failed.error.code == "storage_unavailable"
    assert await services.store.get_usage(job.id) is None


async def test_an_unexpected_error_is_retried_without_leaking_its_text(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    broken = FlakyStorage(services.storage, failures=1, error=RuntimeError("secret dsn=abc"))
    processor = services.processor(storage=broken)
    result = await processor.process(JobTask(job_id=job.id))
    assert result.outcome == "retry"
    assert result.error is not None and result.error.code == "internal_error"
    assert "secret" not in result.error.message
    assert (await processor.process(JobTask(job_id=job.id))).outcome == "succeeded"


async def test_permanent_failure_fails_at_once(services: Services, fixtures_dir: Path) -> None:
    job = await queued_job(services, fixtures_dir, source="bad-truncated.jpg")
    result = await services.processor().process(JobTask(job_id=job.id))
    assert result.outcome == "failed"
    failed = await current(services, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert failed.error is not None and failed.error.code == "invalid_image"


async def test_a_job_not_queued_is_skipped(services: Services, fixtures_dir: Path) -> None:
    job = await queued_job(services, fixtures_dir)
    processor = services.processor()
    assert (await processor.process(JobTask(job_id=job.id))).outcome == "succeeded"
    # A duplicate delivery of the same task claims nothing and changes nothing.
    assert (await processor.process(JobTask(job_id=job.id))).outcome == "skipped"
    assert (await current(services, job.id)).attempts == 1


async def test_cancel_mid_attempt_discards_the_outputs(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    gated = GatedImaging(services.imaging)
    attempt = asyncio.create_task(services.processor(imaging=gated).process(JobTask(job_id=job.id)))
    await asyncio.wait_for(gated.entered.wait(), 10)
    await cancel_processing(services, job.id)
    gated.gate.set()
    result = await asyncio.wait_for(attempt, 30)
    assert result.outcome == "abandoned"
    final = await current(services, job.id)
    assert final.status is JobStatus.CANCELED and final.outputs == []
    assert await services.storage.size(f"outputs/{job.id}/small.png") is None


async def test_heartbeat_keeps_the_lease_and_a_takeover_voids_the_attempt(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    gated = GatedImaging(services.imaging)
    processor = services.processor(imaging=gated, lease_seconds=1.5)
    attempt = asyncio.create_task(processor.process(JobTask(job_id=job.id)))
    await asyncio.wait_for(gated.entered.wait(), 10)
    claimed = await current(services, job.id)
    await asyncio.sleep(1.2)  # past a third of the lease: the heartbeat has renewed it
    renewed = await current(services, job.id)
    assert renewed.lease_expires_at is not None and claimed.lease_expires_at is not None
    assert renewed.lease_expires_at > claimed.lease_expires_at

    # Another worker's reconciler decides this attempt is lost and requeues the job.
    taken = await services.store.transition(
        Transition(
            job_id=job.id,
            expected=frozenset({JobStatus.PROCESSING}),
            target=JobStatus.QUEUED,
            at=utc_now(),
            attempt=claimed.attempts,
        )
    )
    assert taken is not None
    result = await asyncio.wait_for(attempt, 30)  # the heartbeat notices and cancels the work
    assert result.outcome == "abandoned"
    after = await current(services, job.id)
    assert after.status is JobStatus.QUEUED and after.outputs == []
    gated.gate.set()


class SentThenHeld:
    """Real storage whose second write is held, as a PUT that is on the wire: once sent, it is
    stored when ``release`` is set, whether or not its caller is still waiting (as S3 does)."""

    def __init__(self, inner: ObjectStorage) -> None:
        self.inner = inner
        self.writes = 0
        self.sent = asyncio.Event()
        self.release = asyncio.Event()
        self.deliveries: list[asyncio.Task[None]] = []

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self.writes += 1
        if self.writes == 1:
            await self.inner.put(key, data, content_type=content_type)
            return
        delivery = asyncio.create_task(self._deliver(key, data, content_type))
        self.deliveries.append(delivery)
        self.sent.set()
        await asyncio.shield(delivery)

    async def _deliver(self, key: str, data: bytes, content_type: str) -> None:
        await self.release.wait()
        await self.inner.put(key, data, content_type=content_type)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class LeaseWatch:
    """The real store, noting when a lease renewal finds the attempt no longer owns its job."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.lost = asyncio.Event()

    async def renew_lease(self, job_id: str, *, attempt: int, until: datetime) -> bool:
        owned = await self.inner.renew_lease(job_id, attempt=attempt, until=until)
        if not owned:
            self.lost.set()
        return owned

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_cancel_the_heartbeat_notices_discards_every_output_the_attempt_wrote(
    services: Services, fixtures_dir: Path
) -> None:
    """The heartbeat finds the job canceled while the last output's write is in flight: the
    attempt waits for that write instead of cutting it off, then deletes what it wrote."""
    two_outputs = [
        {"id": "large", "action": "resize", "width": 64, "format": "png"},
        {"id": "small", "action": "resize", "width": 32, "format": "png"},
    ]
    job = await queued_job(services, fixtures_dir, pipeline=two_outputs)
    storage, store = SentThenHeld(services.storage), LeaseWatch(services.store)
    processor = Processor(
        store=store,  # type: ignore[arg-type]
        storage=storage,  # type: ignore[arg-type]
        sources=services.sources,
        imaging=services.imaging,
        policy=WorkerPolicy(lease_seconds=1.5),
        metrics=services.metrics,
    )
    attempt = asyncio.create_task(processor.process(JobTask(job_id=job.id)))
    await asyncio.wait_for(storage.sent.wait(), 10)
    await cancel_processing(services, job.id)
    await asyncio.wait_for(store.lost.wait(), 10)  # noticed while the write is still out
    storage.release.set()

    result = await asyncio.wait_for(attempt, 30)
    await asyncio.wait_for(asyncio.gather(*storage.deliveries), 10)
    assert result.outcome == "abandoned"
    assert storage.writes == 2
    for step in ("large", "small"):
        assert await services.storage.size(f"outputs/{job.id}/{step}.png") is None
    assert (await current(services, job.id)).status is JobStatus.CANCELED


class StoredButUnanswered:
    """Real storage whose writes are stored but answered with an outage, as when the
    connection drops after S3 took the object."""

    def __init__(self, inner: ObjectStorage) -> None:
        self.inner = inner

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        await self.inner.put(key, data, content_type=content_type)
        raise StorageUnavailable("object storage is unavailable")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_failed_job_leaves_no_object_from_a_write_that_failed(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    processor = services.processor(storage=StoredButUnanswered(services.storage), max_attempts=1)

    result = await processor.process(JobTask(job_id=job.id))

    assert result.outcome == "failed"
    assert result.error is not None and result.error.code == "storage_unavailable"
    failed = await current(services, job.id)
    assert failed.status is JobStatus.FAILED and failed.outputs == []
    assert await services.storage.size(f"outputs/{job.id}/small.png") is None


async def test_a_slow_fetch_times_out_as_a_transient_error(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    slow = SlowStorage(services.storage)  # the fetch never completes
    result = await services.processor(storage=slow, job_timeout=0.3, max_attempts=5).process(
        JobTask(job_id=job.id)
    )
    assert result.outcome == "retry"
    assert result.error is not None and result.error.code == "timeout"
    assert "fetching the source" in result.error.message
    assert (await current(services, job.id)).status is JobStatus.QUEUED


async def test_a_render_timeout_is_retried_once_then_fails(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    gated = GatedImaging(services.imaging)  # never opened: the render runs out of time
    processor = services.processor(imaging=gated, job_timeout=0.3, max_attempts=5)
    first = await processor.process(JobTask(job_id=job.id))
    assert first.outcome == "retry"
    assert first.error is not None and first.error.code == "render_timeout"
    assert (await current(services, job.id)).status is JobStatus.QUEUED  # retry's backoff: queue's
    second = await processor.process(JobTask(job_id=job.id))
    assert second.outcome == "failed"
    final = await current(services, job.id)
    assert final.status is JobStatus.FAILED and final.attempts == 2
    assert final.error is not None and final.error.code == "render_timeout"


def test_backoff_grows_and_is_capped() -> None:
    for attempt, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (6, 30.0), (20, 30.0)):
        values = [backoff(attempt, base=2, cap=30) for _ in range(50)]
        assert all(1.0 <= v <= ceiling for v in values), (attempt, values)
    assert max(backoff(3, base=2, cap=30) for _ in range(200)) > 4.0
    assert timedelta(seconds=backoff(1, base=0, cap=0)) == timedelta(0)


THREE_OUTPUTS = [
    {"id": f"s{i}", "action": "resize", "width": 64 + i, "format": "png"} for i in range(3)
]


async def test_outputs_past_the_byte_cap_fail_the_job_and_leave_nothing(
    services: Services, fixtures_dir: Path
) -> None:
    # Learn the outputs' sizes from a job without a tight cap.
    sized = await queued_job(services, fixtures_dir, pipeline=THREE_OUTPUTS)
    assert (await services.processor().process(JobTask(job_id=sized.id))).outcome == "succeeded"
    first = (await current(services, sized.id)).outputs[0].bytes

    job = await queued_job(services, fixtures_dir, pipeline=THREE_OUTPUTS)
    attempt = await services.processor(max_output_bytes=first + 1).process(JobTask(job_id=job.id))
    assert attempt.outcome == "failed"  # permanent: no retry would make the outputs smaller
    assert attempt.error is not None and attempt.error.code == "output_too_large"
    failed = await current(services, job.id)
    assert failed.status is JobStatus.FAILED and failed.outputs == []
    # The first output was written (streamed) before the second crossed the cap; it is gone.
    for step in THREE_OUTPUTS:
        key = f"outputs/{job.id}/{step['id']}.png"
        assert await services.storage.size(key) is None


async def test_a_source_replaced_after_start_fails_the_job_as_source_changed(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    # The presigned PUT URL is still valid after start: the client swaps in another file.
    other = (fixtures_dir / "bad-truncated.jpg").read_bytes()
    await services.storage.put(job.object_key, other, content_type="image/jpeg")

    attempt = await services.processor().process(JobTask(job_id=job.id))

    assert attempt.outcome == "failed"
    assert attempt.error is not None and attempt.error.code == "source_changed"


async def test_a_source_larger_than_the_limit_is_refused_before_it_is_read(
    services: Services, fixtures_dir: Path
) -> None:
    job = await queued_job(services, fixtures_dir)
    size = (fixtures_dir / "rocket.jpg").stat().st_size

    attempt = await services.processor(max_source_bytes=size - 1).process(JobTask(job_id=job.id))

    assert attempt.outcome == "failed"
    assert attempt.error is not None and attempt.error.code == "source_too_large"
