"""The watermark's text masks: drawn at a computed size, cached per adapter, bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pyvips

from pixelflow.adapters.imaging import watermark as marking
from pixelflow.adapters.imaging.vips import VipsImaging
from pixelflow.adapters.imaging.watermark import FONT, TextMasks, render_text
from pixelflow.core.errors import ImageRejected
from tests.imaging.helpers import LIMITS, read, steps

MARKED = steps(
    {"id": "small", "action": "resize", "width": 800, "format": "jpeg"},
    {"id": "mark", "action": "watermark", "input": "small", "watermark": {"text": "© PixelFlow"}},
)


class Renders:
    """Counts the masks actually drawn."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = marking.render_text

        def counting(text: str, max_width: int, height: int) -> Any:
            self.count += 1
            return real(text, max_width, height)

        monkeypatch.setattr(marking, "render_text", counting)


@pytest.mark.parametrize(
    ("text", "box"),
    [("© PixelFlow", (760, 30)), ("© PixelFlow", (3800, 150)), ("PF", (200, 6)),
     ("a watermark far too long for one line " * 4, (400, 100))],
)  # fmt: skip
def test_the_mask_fits_its_box_and_nearly_fills_it(text: str, box: tuple[int, int]) -> None:
    max_width, height = box
    mask = render_text(text, max_width, height)
    assert mask.width <= max_width and mask.height <= height
    # As large as libvips' own fitting search makes it, give or take hinting.
    _, found = pyvips.Image.text(
        text, font=FONT, width=max_width, height=height, wrap="none", autofit_dpi=True
    )
    reference = pyvips.Image.text(text, font=FONT, dpi=found["autofit_dpi"], wrap="none")
    assert mask.width >= 0.95 * reference.width or mask.height >= 0.95 * reference.height


def test_text_that_cannot_fit_is_refused() -> None:
    with pytest.raises(ImageRejected) as caught:
        render_text("far too much text for a box this small " * 20, 20, 6)
    assert caught.value.code == "watermark_does_not_fit"


async def test_a_cached_mask_gives_identical_pixels(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = read(fixtures_dir, "photo-1080p.jpg")
    renders = Renders(monkeypatch)
    warm = VipsImaging(workers=1)
    cold = VipsImaging(workers=1)
    try:
        first = await warm.render(source, MARKED, LIMITS)
        again = await warm.render(source, MARKED, LIMITS)
        assert renders.count == 1  # the second job reused the mask
        fresh = await cold.render(source, MARKED, LIMITS)
        assert renders.count == 2  # caches are per adapter, not global
    finally:
        await warm.close()
        await cold.close()
    assert first[1].data == again[1].data == fresh[1].data
    assert len(warm.text_masks) == 1


def test_the_cache_is_least_recently_used_and_bounded_in_entries() -> None:
    masks = TextMasks(max_entries=3)
    first = masks.get("a", 100, 20)
    for text in ("b", "c"):
        masks.get(text, 100, 20)
    assert masks.get("a", 100, 20) is first  # a hit, and now the most recent
    masks.get("d", 100, 20)  # evicts "b", the least recently used
    assert len(masks) == 3
    assert masks.get("a", 100, 20) is first
    assert masks.get("b", 100, 20) is not None and len(masks) == 3


def test_the_cache_is_bounded_in_bytes() -> None:
    masks = TextMasks(max_entries=100, max_bytes=20_000)
    for width in range(200, 400, 10):
        masks.get("PixelFlow", width, 40)
        assert masks.bytes <= 20_000
    assert 0 < len(masks) < 20
    masks.get("PixelFlow", 2000, 400)  # larger than the whole budget: drawn, not kept
    assert masks.bytes <= 20_000
