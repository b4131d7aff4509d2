"""What the imaging adapter tells telemetry: when each step ran, and libvips' pixel memory."""

from __future__ import annotations

import itertools
from pathlib import Path

from pixelflow.adapters.imaging.protocol import StepTiming
from pixelflow.adapters.imaging.vips import VipsImaging
from tests.imaging.helpers import LIMITS, read, steps


async def test_each_step_is_reported_in_order_with_its_times(
    imaging: VipsImaging, fixtures_dir: Path
) -> None:
    timings: list[StepTiming] = []
    pipeline = steps(
        {"id": "large", "action": "resize", "width": 800, "format": "jpeg"},
        {"id": "small", "action": "resize", "width": 200, "input": "large", "format": "png"},
        {"id": "turned", "action": "rotate", "angle": 90, "input": "small", "format": "webp"},
    )
    await imaging.render(
        read(fixtures_dir, "photo-12mp.jpg"), pipeline, LIMITS, on_step=timings.append
    )

    assert [(t.step_id, t.action) for t in timings] == [
        ("decode", "decode"),
        ("large", "resize"),
        ("small", "resize"),
        ("turned", "rotate"),
    ]
    for earlier, later in itertools.pairwise(timings):
        assert earlier.started_ns <= earlier.ended_ns <= later.started_ns <= later.ended_ns


async def test_libvips_pixel_memory_is_read_while_a_job_holds_images(
    imaging: VipsImaging, fixtures_dir: Path
) -> None:
    during: list[int | None] = []
    # A chained step keeps its parent's pixels in memory (copy_memory) while children read it.
    pipeline = steps(
        {"id": "large", "action": "resize", "width": 2000, "format": "jpeg"},
        {"id": "small", "action": "resize", "width": 200, "input": "large", "format": "png"},
    )
    await imaging.render(
        read(fixtures_dir, "photo-12mp.jpg"),
        pipeline,
        LIMITS,
        on_step=lambda timing: during.append(imaging.memory_in_use()),
    )
    # After "large": its 2000x1500 RGB pixels (9 MB) are held for "small".
    assert during[1] is not None and during[1] >= 2000 * 1500 * 3
    idle = imaging.memory_in_use()
    assert idle is not None and idle < 2000 * 1500 * 3
