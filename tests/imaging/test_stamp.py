"""The watermark laid by Pillow over the patch it covers gives libvips' ``composite2`` "over".

To within two levels: Pillow rounds the mark's alpha and the blend where libvips truncates, so
its result is up to one level higher at each of the two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import pyvips

from pixelflow.adapters.imaging import watermark as marking
from pixelflow.adapters.imaging.geometry import place, watermark_metrics
from pixelflow.adapters.imaging.watermark import TextMasks, parse_color, watermark
from pixelflow.core.models import WatermarkOptions
from tests.imaging.helpers import read


def options(**raw: Any) -> WatermarkOptions:
    return msgspec.convert({"text": "© PixelFlow", **raw}, WatermarkOptions)


def composited(image: Any, mark: WatermarkOptions, masks: TextMasks) -> Any:
    """The reference: the whole image through libvips' composite, as the fallback does."""
    text_height, margin = watermark_metrics((image.width, image.height), mark.size)
    mask = masks.get(mark.text, max(1, image.width - 2 * margin), text_height)
    left, top = place(mark.gravity, (image.width, image.height), (mask.width, mask.height), margin)
    alpha = (mask * mark.opacity).cast("uchar")
    ink = mask.new_from_image(parse_color(mark.color)).copy(interpretation="srgb")
    marked = image.composite2(ink.bandjoin(alpha), "over", x=left, y=top)
    if not image.hasalpha():
        marked = marked.extract_band(0, n=image.bands)
    return marked.cast(image.format)


class Stamps:
    """Counts the marks laid by Pillow."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = marking._stamp

        def counting(*args: Any) -> Any:
            self.count += 1
            return real(*args)

        monkeypatch.setattr(marking, "_stamp", counting)


@pytest.fixture
def photo(fixtures_dir: Path) -> Any:
    return pyvips.Image.new_from_buffer(read(fixtures_dir, "photo-1080p.jpg"), "").copy_memory()


@pytest.mark.parametrize(
    "mark",
    [options(), options(opacity=1.0, color="#f00", gravity="center", size=0.2),
     options(opacity=0.3, color="#0a7", gravity="northwest"), options(opacity=0.0)],
)  # fmt: skip
def test_over_an_opaque_image_it_matches_libvips_composite(
    photo: Any, mark: WatermarkOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamps = Stamps(monkeypatch)
    masks = TextMasks()
    stamped = watermark(photo, mark, masks).copy_memory()
    assert stamps.count == 1
    reference = composited(photo, mark, masks)
    assert (stamped.width, stamped.height, stamped.bands) == (photo.width, photo.height, 3)
    assert stamped.interpretation == "srgb" and stamped.format == "uchar"
    difference = (stamped.cast("int") - reference.cast("int")).abs()
    assert difference.max() <= 2
    if mark.opacity > 0:  # the mark is there, not lost on the way back into the image
        assert (stamped.cast("int") - photo.cast("int")).abs().max() > 10


def test_over_a_translucent_image_it_matches_libvips_composite(
    photo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An alpha band that ramps from transparent to opaque across the image.
    ramp = pyvips.Image.xyz(photo.width, photo.height)[0] * (255 / photo.width)
    image = photo.bandjoin(ramp.cast("uchar")).copy(interpretation="srgb").copy_memory()
    stamps = Stamps(monkeypatch)
    masks = TextMasks()
    mark = options(opacity=0.8, gravity="center", size=0.3, color="#123456")
    stamped = watermark(image, mark, masks).copy_memory()
    assert stamps.count == 1
    reference = composited(image, mark, masks)
    assert stamped.bands == 4
    assert (stamped.cast("int") - reference.cast("int")).abs()[3].max() <= 2
    # Compared premultiplied, as any reader will see them: where the result is nearly
    # transparent, its colour says next to nothing (and the two round it apart).
    assert (premultiplied(stamped) - premultiplied(reference)).abs().max() <= 2


def premultiplied(image: Any) -> Any:
    return image[0:3].cast("float") * image[3] / 255


def test_images_it_cannot_stamp_are_composited_by_libvips(
    photo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamps = Stamps(monkeypatch)
    masks = TextMasks()
    grey = photo.colourspace("b-w").copy_memory()
    marked = watermark(grey, options(), masks).copy_memory()
    assert stamps.count == 0
    assert marked.bands == 1
    assert (marked - grey).abs().max() > 10
    # A mark taller than the image (the minimum text height) reaches past its edges.
    strip = photo.crop(0, 0, 400, 4).copy_memory()
    marked = watermark(strip, options(), masks).copy_memory()
    assert stamps.count == 0
    assert (marked.width, marked.height) == (400, 4)
