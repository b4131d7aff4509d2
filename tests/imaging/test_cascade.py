"""A resize of the source started from a larger earlier resize ("fast" only): what each resize
really reads, the sizes it gives, and how close its pixels stay to resampling the decode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pixelflow.adapters.imaging import vips as renderer
from pixelflow.adapters.imaging.vips import VipsImaging, render_job
from pixelflow.core.pipeline import SHRINK_HEADROOM, JpegShrink
from tests.imaging.helpers import LIMITS, mean_difference, open_output, read, steps

SET = steps(
    {"id": "w1600", "action": "resize", "width": 1600, "format": "png"},
    {"id": "w800", "action": "resize", "width": 800, "format": "png"},
    {"id": "w800-webp", "action": "resize", "width": 800, "format": "webp"},
    {"id": "w320", "action": "resize", "width": 320, "format": "png"},
)


class Reads:
    """The width of the image each step was computed from."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.widths: dict[str, int] = {}
        real = renderer.apply  # type: ignore[attr-defined]  # imported there, patched there

        def recording(step: Any, image: Any, *args: Any, **kwargs: Any) -> Any:
            self.widths[step.id] = image.width
            return real(step, image, *args, **kwargs)

        monkeypatch.setattr(renderer, "apply", recording)


async def render(mode: JpegShrink, source: bytes, pipeline: list[Any]) -> list[Any]:
    imaging = VipsImaging(workers=1, jpeg_shrink=mode)
    try:
        return [open_output(output) for output in await imaging.render(source, pipeline, LIMITS)]
    finally:
        await imaging.close()


@pytest.mark.parametrize(
    ("mode", "widths"),
    [
        # The 4000 px photo decodes at 1/2; each size then starts from the next larger one.
        ("fast", {"w1600": 2000, "w800": 1600, "w320": 800}),
        # A full-size decode (1600 px keeps a 2× margin), and every size from it.
        ("quality", {"w1600": 4000, "w800": 4000, "w320": 4000}),
    ],
)
async def test_what_each_size_is_resampled_from(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch, mode: JpegShrink, widths: dict[str, int]
) -> None:
    reads = Reads(monkeypatch)
    await render(mode, read(fixtures_dir, "photo-12mp.jpg"), SET)
    assert reads.widths == widths  # the WebP repeats the 800 px result: computed once


def test_the_pixels_stay_close_to_resampling_the_decode(fixtures_dir: Path) -> None:
    source = read(fixtures_dir, "photo-12mp.jpg")
    headroom = SHRINK_HEADROOM["fast"]
    cascaded = render_job(source, SET, LIMITS, headroom=headroom, cascade_resizes=True)
    direct = render_job(source, SET, LIMITS, headroom=headroom, cascade_resizes=False)
    # Same decode, same 1600 px resample; the smaller sizes differ by under a level on average
    # (compared in the lossless PNGs: the WebP's encoder magnifies any change).
    assert cascaded[0].data == direct[0].data
    for index in (1, 2, 3):
        near, far = open_output(cascaded[index]), open_output(direct[index])
        assert (near.width, near.height) == (far.width, far.height)
        if cascaded[index].format == "png":
            assert 0 < mean_difference(near, far) < 1


# rocket.jpg is 640×427 (odd proportions once shrunk): every cascaded size is the one a lone
# resize of the source gives.
ODD = [{"width": 200}, {"height": 133}, {"width": 100}, {"width": 63}, {"height": 21}]


@pytest.mark.parametrize("box", ODD)
async def test_sizes_are_those_of_the_source(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch, box: dict[str, Any]
) -> None:
    source = read(fixtures_dir, "rocket.jpg")
    reads = Reads(monkeypatch)
    larger = {"id": "larger", "action": "resize", "width": 400, "format": "png"}
    [_, cascaded] = await render(
        "fast", source, steps(larger, {"id": "r", "action": "resize", "format": "png", **box})
    )
    assert reads.widths["r"] == 400  # read from the larger resize, not the decode
    [alone] = await render(
        "fast", source, steps({"id": "r", "action": "resize", "format": "png", **box})
    )
    assert (cascaded.width, cascaded.height) == (alone.width, alone.height)
