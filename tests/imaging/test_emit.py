"""``render`` with ``emit``: each output is handed over in order while the next one is encoded,
and every handover has been taken by the time ``render`` returns, raises or is cancelled (a
write the caller does not know of would outlive the attempt)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from pixelflow.adapters.imaging import vips
from pixelflow.adapters.imaging.encode import encode
from pixelflow.adapters.imaging.protocol import ImageLimits, Rendered
from pixelflow.adapters.imaging.vips import VipsImaging
from pixelflow.core.errors import ImageRejected
from tests.imaging.helpers import LIMITS, read, steps

THREE_SIZES = steps(
    {"id": "a", "action": "resize", "width": 320, "format": "jpeg"},
    {"id": "b", "action": "resize", "width": 200, "format": "jpeg"},
    {"id": "c", "action": "resize", "width": 100, "format": "jpeg"},
)


class Encodes:
    """Counts the encodes done in the pool thread; ``second`` is set once two are done."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.second = threading.Event()

        def counting(*args: Any, **kwargs: Any) -> bytes:
            data = encode(*args, **kwargs)
            self.count += 1
            if self.count == 2:
                self.second.set()
            return data

        monkeypatch.setattr(vips, "encode", counting)


async def test_the_next_output_is_encoded_while_emit_takes_the_last(
    imaging: VipsImaging, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encodes = Encodes(monkeypatch)
    emitted: list[str] = []
    encoded_meanwhile: list[bool] = []

    async def emit(output: Rendered) -> None:
        if not emitted:  # the first output: is the second encoded before this returns?
            encoded_meanwhile.append(await asyncio.to_thread(encodes.second.wait, 10))
        emitted.append(output.step_id)

    result = await imaging.render(
        read(fixtures_dir, "photo-1080p.jpg"), THREE_SIZES, LIMITS, emit=emit
    )
    assert result == []
    assert emitted == ["a", "b", "c"]  # in order, each once
    assert encoded_meanwhile == [True]


async def test_a_failing_render_returns_only_once_emit_has_taken_its_last_output(
    imaging: VipsImaging, fixtures_dir: Path
) -> None:
    """The step after the second output is refused before any pixel of it is computed, while
    emit still works on the second: ``render`` raises only after that emit has returned."""
    taken: list[str] = []

    async def slow_emit(output: Rendered) -> None:
        await asyncio.sleep(0.2)
        taken.append(output.step_id)

    pipeline = steps(
        {"id": "a", "action": "resize", "width": 320, "format": "jpeg"},
        {"id": "b", "action": "resize", "width": 200, "format": "jpeg"},
        {"id": "huge", "action": "resize", "width": 8000, "format": "jpeg"},  # 48 MP
    )
    limits = ImageLimits(max_pixels=3_000_000, max_bytes=LIMITS.max_bytes)
    with pytest.raises(ImageRejected) as refused:
        await imaging.render(
            read(fixtures_dir, "photo-1080p.jpg"), pipeline, limits, emit=slow_emit
        )
    assert refused.value.code == "output_too_large"
    assert taken == ["a", "b"]


async def test_a_cancelled_render_waits_for_the_emit_in_flight(
    imaging: VipsImaging, fixtures_dir: Path
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    taken: list[str] = []

    async def held_emit(output: Rendered) -> None:
        entered.set()
        await release.wait()
        taken.append(output.step_id)

    rendering = asyncio.create_task(
        imaging.render(read(fixtures_dir, "photo-1080p.jpg"), THREE_SIZES, LIMITS, emit=held_emit)
    )
    await asyncio.wait_for(entered.wait(), 10)
    rendering.cancel()
    await asyncio.sleep(0.3)
    assert not rendering.done(), "render gave up while emit still held an output"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await rendering
    assert taken == ["a"]  # the one handed over, and no other after the cancel
