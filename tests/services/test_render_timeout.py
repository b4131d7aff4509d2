"""A render that runs out of time is stopped, with the real libvips adapter: the pool thread is
free again shortly after the timeout, no CPU is burned afterwards, and the job fails after at
most two attempts instead of burning the timeout WORKER_MAX_ATTEMPTS times."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import msgspec

from pixelflow.adapters.imaging.protocol import ImageLimits
from pixelflow.core.models import JobTask, Step
from pixelflow.core.states import JobStatus
from tests.services.conftest import Services
from tests.support.queued_jobs import queued_upload

# Far more than a second of work on any machine: an 8000 px wide (43 MP) upscale, blurred at σ 100.
IMPOSSIBLE = [
    {"id": "huge", "action": "resize", "width": 8000, "emit": False},
    {"id": "blurred", "action": "blur", "sigma": 100, "input": "huge", "format": "jpeg"},
]
QUICK = [{"id": "small", "action": "resize", "width": 32, "format": "png"}]
TIMEOUT = 1.0
# How long after the timeout the render may take to really stop (libvips checks its kill flag
# every few tiles; measured: a few milliseconds). Generous for a busy CI machine.
STOP_BOUND = 5.0


async def test_a_render_past_the_timeout_is_stopped_and_tried_at_most_twice(
    services: Services, fixtures_dir: Path
) -> None:
    data = (fixtures_dir / "rocket.jpg").read_bytes()
    job = await queued_upload(services.store, services.storage, IMPOSSIBLE, data)
    # One libvips thread (the fixture's pool has one worker) and one slot.
    processor = services.processor(job_timeout=TIMEOUT, max_attempts=5, max_active_jobs=1)

    outcomes = []
    for _ in range(5):  # as many deliveries as the attempt limit would allow
        started = time.monotonic()
        attempt = await processor.process(JobTask(job_id=job.id))
        elapsed = time.monotonic() - started
        if attempt.outcome == "skipped":
            break
        outcomes.append(attempt.outcome)
        # process() returns only once the render has stopped (the slot is held until then).
        assert elapsed < TIMEOUT + STOP_BOUND, elapsed
        assert attempt.error is not None and attempt.error.code == "render_timeout"

        # Nothing keeps computing for the dead attempt: the process is idle now.
        cpu_before = time.process_time()
        await asyncio.sleep(1.0)
        assert time.process_time() - cpu_before < 0.5

    assert outcomes == ["retry", "failed"]
    final = await services.store.get_job(job.id)
    assert final is not None
    assert final.status is JobStatus.FAILED and final.attempts == 2
    assert final.error is not None and final.error.code == "render_timeout"

    # The pool's only thread is free: a quick render runs at once.
    quick = await queued_upload(services.store, services.storage, QUICK, data)
    started = time.monotonic()
    result = await services.processor().process(JobTask(job_id=quick.id))
    assert result.outcome == "succeeded"
    assert time.monotonic() - started < STOP_BOUND


async def test_cancelling_a_render_waits_until_libvips_has_stopped(
    services: Services, fixtures_dir: Path
) -> None:
    """Cancelled from outside (a lost lease, a shutdown), ``render`` still returns only once the
    thread is free: a second render on the one-thread pool starts right away."""
    data = (fixtures_dir / "rocket.jpg").read_bytes()
    steps = msgspec.convert(IMPOSSIBLE, type=list[Step])
    limits = ImageLimits(max_pixels=1_000_000_000, max_bytes=50 * 1024 * 1024)
    render = asyncio.create_task(services.imaging.render(data, steps, limits))
    await asyncio.sleep(1.0)
    assert not render.done()  # still computing
    render.cancel()
    started = time.monotonic()
    with contextlib.suppress(asyncio.CancelledError):
        await render
    assert render.cancelled()
    assert time.monotonic() - started < STOP_BOUND

    quick = msgspec.convert(QUICK, type=list[Step])
    async with asyncio.timeout(STOP_BOUND):
        rendered = await services.imaging.render(data, quick, limits)
    assert [r.step_id for r in rendered] == ["small"]
