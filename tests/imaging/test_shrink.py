"""PIXELFLOW_JPEG_SHRINK: how far a JPEG is reduced while decoding, and exact output sizes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pyvips

from pixelflow.adapters.imaging import decode as decoding
from pixelflow.adapters.imaging import operations, pillow_codecs
from pixelflow.adapters.imaging.vips import VipsImaging
from pixelflow.config import ConfigError, Role, load_settings
from pixelflow.core.pipeline import JpegShrink
from tests.imaging.helpers import LIMITS, open_output, read, steps


class LoaderCalls:
    """Records the scale each decode took, whichever codec did it (Pillow's or libvips')."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.shrinks: list[int] = []
        real_load, real_pillow = decoding._load, pillow_codecs.decode_jpeg

        def recording(loader: decoding.Loader, data: bytes, **options: Any) -> Any:
            if options.get("access") == "sequential":  # the decode, not the header read
                self.shrinks.append(options.get("shrink", 1))
            return real_load(loader, data, **options)

        def recording_pillow(data: bytes, *, pixels: int, shrink: int) -> Any:
            image = real_pillow(data, pixels=pixels, shrink=shrink)
            if image is not None:
                self.shrinks.append(shrink)
            return image

        monkeypatch.setattr(decoding, "_load", recording)
        monkeypatch.setattr(pillow_codecs, "decode_jpeg", recording_pillow)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> LoaderCalls:
    return LoaderCalls(monkeypatch)


@pytest.fixture(params=["fast", "quality"])
async def shrinking(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, VipsImaging]]:
    adapter = VipsImaging(workers=1, jpeg_shrink=request.param)
    yield request.param, adapter
    await adapter.close()


# photo-12mp.jpg is 4000×3000. (resize step, expected size, JPEG shrink: fast, quality)
CASES: list[tuple[dict[str, Any], tuple[int, int], int, int]] = [
    ({"width": 800}, (800, 600), 4, 2),  # 5×: fast takes 4, quality keeps 2× → 2
    ({"width": 1000}, (1000, 750), 4, 2),  # exactly 4×: the decode is the output's size
    ({"width": 1600}, (1600, 1200), 2, 1),
    ({"width": 320}, (320, 240), 8, 4),
    ({"width": 999, "height": 999, "fit": "cover"}, (999, 999), 2, 1),  # 3000/999 ≈ 3
    ({"width": 3999}, (3999, 2999), 1, 1),
]


@pytest.mark.parametrize(("resize", "size", "fast", "quality"), CASES)
async def test_jpeg_shrink_on_load_and_exact_sizes(
    shrinking: tuple[JpegShrink, VipsImaging],
    fixtures_dir: Path,
    loads: LoaderCalls,
    resize: dict[str, Any],
    size: tuple[int, int],
    fast: int,
    quality: int,
) -> None:
    mode, imaging = shrinking
    [rendered] = await imaging.render(
        read(fixtures_dir, "photo-12mp.jpg"),
        steps({"id": "r", "action": "resize", "format": "jpeg", **resize}),
        LIMITS,
    )
    image = open_output(rendered)
    assert (image.width, image.height) == size
    expected = fast if mode == "fast" else quality
    assert loads.shrinks == [expected]


async def test_the_largest_output_decides_the_shared_decode(
    fixtures_dir: Path, loads: LoaderCalls
) -> None:
    imaging = VipsImaging(workers=1, jpeg_shrink="fast")
    try:
        rendered = await imaging.render(
            read(fixtures_dir, "photo-12mp.jpg"),
            steps(
                *(
                    {"id": f"w{width}", "action": "resize", "width": width, "format": "jpeg"}
                    for width in (1600, 800, 320)
                ),
                {"id": "w800-webp", "action": "resize", "width": 800, "format": "webp"},
            ),
            LIMITS,
        )
    finally:
        await imaging.close()
    sizes = [(image.width, image.height) for image in map(open_output, rendered)]
    assert sizes == [(1600, 1200), (800, 600), (320, 240), (800, 600)]
    assert loads.shrinks == [2]  # 4000 / 1600 = 2.5


def test_the_setting_defaults_to_fast_and_is_validated(tmp_path: Path) -> None:
    environ = {"PIXELFLOW_DATA_DIR": str(tmp_path)}
    assert load_settings(Role.SERVE, environ).jpeg_shrink == "fast"
    quality = {**environ, "PIXELFLOW_JPEG_SHRINK": "quality"}
    assert load_settings(Role.SERVE, quality).jpeg_shrink == "quality"
    with pytest.raises(ConfigError, match="PIXELFLOW_JPEG_SHRINK"):
        load_settings(Role.SERVE, {**environ, "PIXELFLOW_JPEG_SHRINK": "fastest"})


# rocket.jpg is 640×427: a decode shrunk by 2 or 4 rounds its height down (213, 106), so the
# output must be sized from the full image, as a full-size decode would be.
ODD: list[dict[str, Any]] = [
    {"width": 320},
    {"width": 160},
    {"width": 100},
    {"width": 80, "height": 80},
    {"width": 160, "height": 160, "fit": "contain"},
    {"width": 150, "height": 90, "fit": "cover"},
    {"width": 150, "height": 90, "fit": "fill"},
    {"height": 53},
]


@pytest.mark.parametrize("resize", ODD)
async def test_output_sizes_do_not_depend_on_the_decode_shrink(
    shrinking: tuple[JpegShrink, VipsImaging], fixtures_dir: Path, resize: dict[str, Any]
) -> None:
    _, imaging = shrinking
    source = read(fixtures_dir, "rocket.jpg")
    pipeline = steps({"id": "r", "action": "resize", "format": "png", **resize})
    [shrunk] = await imaging.render(source, pipeline, LIMITS)
    # The same step with a full-size decode (a full-resolution consumer forces one).
    full_decode = steps(
        {"id": "r", "action": "resize", "format": "png", **resize},
        {"id": "keep", "action": "rotate", "angle": 90, "format": "png"},
    )
    full, _ = await imaging.render(source, full_decode, LIMITS)
    assert (shrunk.width, shrunk.height) == (full.width, full.height)
    image = open_output(shrunk)
    assert (image.width, image.height) == (full.width, full.height)


async def test_a_size_worked_out_once_is_not_worked_out_again(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sizing a shrunk decode's output from the full image's size sets up a whole thumbnail in
    # libvips (on a black image); the answer depends on the sizes alone, so it is remembered.
    operations._thumbnail_size.cache_clear()
    black_images: list[tuple[int, int]] = []
    real_black = pyvips.Image.black

    def counting(width: int, height: int, **options: Any) -> Any:
        black_images.append((width, height))
        return real_black(width, height, **options)

    monkeypatch.setattr(pyvips.Image, "black", counting)
    imaging = VipsImaging(workers=1, jpeg_shrink="fast")
    source = read(fixtures_dir, "rocket.jpg")
    try:
        sizes = []
        for upscale in (False, False, True):
            pipeline = steps(
                {"id": "r", "action": "resize", "width": 100, "upscale": upscale, "format": "png"}
            )
            [rendered] = await imaging.render(source, pipeline, LIMITS)
            sizes.append((rendered.width, rendered.height))
    finally:
        await imaging.close()
    # rocket.jpg is 640×427: 100 wide is 67 high from the full image (a 1/4 decode, 160×106,
    # would give 66). Enlarging or not is part of the question, so it is asked again.
    assert sizes == [(100, 67)] * 3
    assert black_images == [(640, 427), (640, 427)]
