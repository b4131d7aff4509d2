"""The adapter as a whole: decode once, chaining, emit, the thread pool, and the required job."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import pyvips

from pixelflow.adapters.imaging import decode as decoding
from pixelflow.adapters.imaging import operations
from pixelflow.adapters.imaging import vips as vips_adapter
from pixelflow.adapters.imaging.protocol import ImageLimits
from pixelflow.adapters.imaging.vips import VipsImaging
from pixelflow.core.errors import ImageRejected
from tests.imaging.helpers import LIMITS, open_output, read, steps
from tests.support.jobs import DONE_WHEN_OUTPUTS, DONE_WHEN_PIPELINE


class Decodes:
    """Wraps the adapter's decode to record each call's shrink factor and thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[float, str]] = []
        real = decoding.decode

        def counting(data: bytes, source: decoding.Source, shrink: float, **options: Any) -> Any:
            self.calls.append((shrink, threading.current_thread().name))
            return real(data, source, shrink, **options)

        monkeypatch.setattr(decoding, "decode", counting)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Decodes:
    return Decodes(monkeypatch)


async def test_the_required_job(imaging: VipsImaging, fixtures_dir: Path, decodes: Decodes) -> None:
    rendered = await imaging.render(
        read(fixtures_dir, "photo-12mp.jpg"),
        steps(*DONE_WHEN_PIPELINE),
        LIMITS,
    )
    assert [r.step_id for r in rendered] == list(DONE_WHEN_OUTPUTS)
    for result in rendered:
        width, height, fmt, _, content_type = DONE_WHEN_OUTPUTS[result.step_id]
        image = open_output(result)
        assert (image.width, image.height, result.format) == (width, height, fmt)
        assert result.content_type == content_type
    assert len(decodes.calls) == 1


async def test_decode_once_at_the_largest_shrink_that_serves_every_step(
    imaging: VipsImaging, fixtures_dir: Path, decodes: Decodes
) -> None:
    rendered = await imaging.render(
        read(fixtures_dir, "photo-1080p.jpg"),  # 1920×1440
        steps(
            {"id": "w400", "action": "resize", "width": 400},
            {"id": "w200", "action": "resize", "width": 200, "format": "webp"},
            {"id": "w100", "action": "resize", "width": 100, "input": "w400", "format": "png"},
            {"id": "flat", "action": "rotate", "angle": 90, "input": "w100"},
        ),
        LIMITS,
    )
    sizes = [(output.width, output.height) for output in map(open_output, rendered)]
    assert sizes == [(400, 300), (200, 150), (100, 75), (75, 100)]
    # 1920 / 400 = 4.8 (the default "fast" shrink keeps no margin): libjpeg may shrink by 4.
    [(shrink, thread)] = decodes.calls
    assert shrink == pytest.approx(4.8)
    assert thread.startswith("pixelflow-vips")  # off the event loop


@pytest.mark.parametrize(
    ("fixture", "size", "shrink"),
    [
        ("coffee.webp", (100, 67), 6.0),  # WebP scales while decoding, too
        ("coffee.avif", (100, 67), 6.0),  # the others decode full size whatever the plan
        ("chelsea.png", (100, 67), 4.51),
    ],
)
async def test_resize_only_jobs_from_other_formats(
    imaging: VipsImaging,
    fixtures_dir: Path,
    decodes: Decodes,
    fixture: str,
    size: tuple[int, int],
    shrink: float,
) -> None:
    [rendered] = await imaging.render(
        read(fixtures_dir, fixture), steps({"id": "s", "action": "resize", "width": 100}), LIMITS
    )
    image = open_output(rendered)
    assert (image.width, image.height) == size
    assert [planned for planned, _ in decodes.calls] == [pytest.approx(shrink)]


async def test_a_full_resolution_step_forces_a_full_decode(
    imaging: VipsImaging, fixtures_dir: Path, decodes: Decodes
) -> None:
    await imaging.render(
        read(fixtures_dir, "photo-1080p.jpg"),
        steps(
            {"id": "w400", "action": "resize", "width": 400},
            {"id": "cut", "action": "crop", "width": 10, "height": 10, "x": 0, "y": 0},
        ),
        LIMITS,
    )
    assert [shrink for shrink, _ in decodes.calls] == [1.0]


async def test_one_size_in_two_formats_is_resized_once(
    imaging: VipsImaging, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = read(fixtures_dir, "photo-1080p.jpg")
    pipeline = steps(
        {"id": "jpeg", "action": "resize", "width": 400, "format": "jpeg"},
        {"id": "webp", "action": "resize", "width": 400, "format": "webp"},
        {"id": "small", "action": "resize", "width": 200, "format": "jpeg"},
        {"id": "blurred", "action": "blur", "sigma": 2, "input": "webp", "format": "png"},
    )
    # Alone, each of the two decodes at the same shrink as in the whole pipeline.
    alone = {
        step.id: (await imaging.render(source, [step], LIMITS))[0].data for step in pipeline[:2]
    }
    applied: list[str] = []
    real = operations.apply

    def counting(step: Any, *args: Any, **kwargs: Any) -> Any:
        applied.append(step.id)
        return real(step, *args, **kwargs)

    monkeypatch.setattr(vips_adapter, "apply", counting)
    rendered = await imaging.render(source, pipeline, LIMITS)

    assert applied == ["jpeg", "small", "blurred"]
    outputs = {result.step_id: result for result in rendered}
    # The shared pixels are the ones each step computes alone: the same bytes.
    assert {step_id: outputs[step_id].data for step_id in alone} == alone
    assert outputs["webp"].format == "webp"
    assert (outputs["blurred"].width, outputs["blurred"].height) == (400, 300)


async def test_intermediate_steps_are_not_emitted(imaging: VipsImaging, fixtures_dir: Path) -> None:
    rendered = await imaging.render(
        read(fixtures_dir, "rocket.jpg"),
        steps(
            {"id": "small", "action": "resize", "width": 320, "emit": False},
            {"id": "turned", "action": "rotate", "angle": 90, "input": "small", "emit": False},
            {"id": "a", "action": "flip", "direction": "vertical", "input": "turned"},
            {"id": "b", "action": "convert", "input": "turned", "format": "png"},
            {"id": "c", "action": "convert", "format": "webp"},
        ),
        LIMITS,
    )
    assert [(r.step_id, r.width, r.height) for r in rendered] == [
        ("a", 214, 320),
        ("b", 214, 320),
        ("c", 640, 427),
    ]


async def test_an_enlargement_past_the_pixel_budget_is_refused(
    imaging: VipsImaging, fixtures_dir: Path
) -> None:
    with pytest.raises(ImageRejected) as caught:
        await imaging.render(
            read(fixtures_dir, "rocket.jpg"),
            steps({"id": "huge", "action": "resize", "width": 4000}),
            ImageLimits(max_pixels=10_000_000, max_bytes=10**8),
        )
    assert caught.value.code == "output_too_large"
    assert "'huge'" in caught.value.message


async def test_libvips_runs_single_threaded_without_an_operation_cache(
    imaging: VipsImaging,
) -> None:
    assert pyvips.concurrency_get() == 1
    assert pyvips.cache_get_max() == 0


async def test_jobs_share_the_pool(
    imaging: VipsImaging, fixtures_dir: Path, decodes: Decodes
) -> None:
    source = read(fixtures_dir, "rocket.jpg")
    pipeline = steps({"id": "s", "action": "resize", "width": 100})
    results = await asyncio.gather(*(imaging.render(source, pipeline, LIMITS) for _ in range(4)))
    assert [r[0].width for r in results] == [100] * 4
    assert {thread for _, thread in decodes.calls} <= {"pixelflow-vips_0", "pixelflow-vips_1"}


async def test_closed_adapter_refuses_work(fixtures_dir: Path) -> None:
    adapter = VipsImaging(workers=1)
    await adapter.close()
    with pytest.raises(RuntimeError):
        await adapter.render(
            read(fixtures_dir, "rocket.jpg"), steps({"id": "c", "action": "convert"}), LIMITS
        )


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        VipsImaging(workers=0)
