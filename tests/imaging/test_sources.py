"""Untrusted sources: bad bytes, bombs, limits, refused formats, animation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pyvips

from pixelflow.adapters.imaging import decode as decoding
from pixelflow.adapters.imaging import vips
from pixelflow.adapters.imaging.protocol import ImageLimits
from pixelflow.adapters.imaging.vips import VipsImaging
from pixelflow.core.errors import ImageRejected, SourceTooLarge
from tests.imaging.helpers import LIMITS, open_output, read, steps

CONVERT = steps({"id": "c", "action": "convert"})

PPM = b"P5\n2 2\n255\n\x00\x00\x00\x00"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>'


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any pixel decode fail the test: refusals must come from the header alone."""

    def forbidden(*args: Any) -> Any:
        raise AssertionError("the source was decoded")

    monkeypatch.setattr(decoding, "decode", forbidden)


@pytest.mark.parametrize("fixture", ["bad-truncated.jpg", "bad-not-an-image.jpg", "bad-empty.png"])
async def test_bad_inputs_are_invalid_images(
    imaging: VipsImaging, fixtures_dir: Path, fixture: str
) -> None:
    with pytest.raises(ImageRejected) as caught:
        await imaging.render(read(fixtures_dir, fixture), CONVERT, LIMITS)
    assert type(caught.value) is ImageRejected
    assert caught.value.code == "invalid_image"
    assert "vips" not in caught.value.message.lower()
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("data", [PPM, SVG, b"%PDF-1.4\n"], ids=["ppm", "svg", "pdf"])
async def test_formats_outside_the_allowlist_are_refused(
    imaging: VipsImaging, data: bytes, no_decoding: None
) -> None:
    with pytest.raises(ImageRejected) as caught:
        await imaging.render(data, CONVERT, LIMITS)
    assert caught.value.code == "invalid_image"


async def test_libvips_itself_refuses_other_loaders(imaging: VipsImaging) -> None:
    # Defence in depth: even a direct call outside the adapter cannot reach a blocked loader.
    with pytest.raises(pyvips.Error):
        pyvips.Image.new_from_buffer(PPM, "").avg()


async def test_the_bomb_is_refused_from_its_header(
    imaging: VipsImaging, fixtures_dir: Path, no_decoding: None
) -> None:
    bomb = read(fixtures_dir, "bad-bomb-400mp.png")
    assert len(bomb) < LIMITS.max_bytes
    with pytest.raises(SourceTooLarge) as caught:
        await imaging.render(bomb, CONVERT, LIMITS)
    assert caught.value.code == "source_too_large"
    assert "20000×20000" in caught.value.message


async def test_pixel_limit(imaging: VipsImaging, fixtures_dir: Path, no_decoding: None) -> None:
    rocket = read(fixtures_dir, "rocket.jpg")  # 640×427 = 273,280 pixels
    with pytest.raises(SourceTooLarge):
        await imaging.render(rocket, CONVERT, ImageLimits(max_pixels=273_279, max_bytes=10**8))


async def test_byte_limit(imaging: VipsImaging, fixtures_dir: Path, no_decoding: None) -> None:
    rocket = read(fixtures_dir, "rocket.jpg")
    limits = ImageLimits(max_pixels=10**8, max_bytes=len(rocket) - 1)
    with pytest.raises(SourceTooLarge) as caught:
        await imaging.render(rocket, CONVERT, limits)
    assert caught.value.code == "source_too_large"


async def test_sources_at_the_limits_pass(imaging: VipsImaging, fixtures_dir: Path) -> None:
    rocket = read(fixtures_dir, "rocket.jpg")
    limits = ImageLimits(max_pixels=640 * 427, max_bytes=len(rocket))
    [rendered] = await imaging.render(rocket, CONVERT, limits)
    assert (rendered.width, rendered.height) == (640, 427)


async def test_animated_gif_renders_its_first_frame(
    imaging: VipsImaging, fixtures_dir: Path
) -> None:
    gif = read(fixtures_dir, "animated.gif")
    rendered = await imaging.render(
        gif,
        steps(
            {"id": "same", "action": "convert"},
            {"id": "big", "action": "resize", "width": 140, "format": "webp"},
            {"id": "marked", "action": "watermark", "watermark": {"text": "PF"}},
        ),
        LIMITS,
    )
    [same, big, marked] = (open_output(output) for output in rendered)
    first_frame = pyvips.Image.new_from_buffer(gif, "")
    assert (same.width, same.height) == (first_frame.width, first_frame.height) == (14, 25)
    assert same.get("n-pages") == 1
    assert (big.width, big.height) == (140, 250)
    assert (marked.width, marked.height) == (14, 25)


async def test_a_libvips_failure_in_a_step_is_processing_failed(
    imaging: VipsImaging, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise pyvips.Error("vips_internal_detail: out of order")

    monkeypatch.setattr(vips, "apply", failing)
    with pytest.raises(ImageRejected) as caught:
        await imaging.render(read(fixtures_dir, "rocket.jpg"), CONVERT, LIMITS)
    assert caught.value.code == "processing_failed"
    assert caught.value.message == "step 'c' (convert) could not be processed"


async def test_text_libvips_cannot_lay_out_is_watermark_does_not_fit(
    imaging: VipsImaging, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room(*args: Any, **kwargs: Any) -> Any:
        raise pyvips.Error("vips_text: no room")

    monkeypatch.setattr(pyvips.Image, "text", no_room)
    mark = steps({"id": "m", "action": "watermark", "watermark": {"text": "PF"}})
    with pytest.raises(ImageRejected) as caught:
        await imaging.render(read(fixtures_dir, "rocket.jpg"), mark, LIMITS)
    assert caught.value.code == "watermark_does_not_fit"
    assert "vips" not in caught.value.message
