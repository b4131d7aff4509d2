"""Text watermarks, rendered by libvips (Pango) with the machine's DejaVu Sans."""

from __future__ import annotations

import html
from typing import Any

import pyvips

from pixelflow.adapters.imaging.geometry import place, watermark_metrics
from pixelflow.core.errors import ImageRejected
from pixelflow.core.models import WatermarkOptions

FONT = "DejaVu Sans Bold"


def watermark(image: Any, options: WatermarkOptions) -> Any:
    text_height, margin = watermark_metrics((image.width, image.height), options.size)
    mask = _render_text(options.text, max(1, image.width - 2 * margin), text_height)
    alpha = (mask * options.opacity).cast("uchar")
    ink = mask.new_from_image(parse_color(options.color)).copy(interpretation="srgb")
    left, top = place(
        options.gravity, (image.width, image.height), (mask.width, mask.height), margin
    )
    marked = image.composite2(ink.bandjoin(alpha), "over", x=left, y=top)
    if not image.hasalpha():
        # Compositing always adds an alpha band; over an opaque image it is opaque everywhere.
        marked = marked.extract_band(0, n=image.bands)
    return marked if marked.format == image.format else marked.cast(image.format)


def _render_text(text: str, max_width: int, height: int) -> Any:
    """A one-line text mask at the largest size that fits ``max_width``×``height``."""
    try:
        # Pango reads markup: escape it, so "<" or "&" in a watermark is just text.
        return pyvips.Image.text(
            html.escape(text, quote=False), font=FONT, width=max_width, height=height, wrap="none"
        )
    except pyvips.Error:
        raise ImageRejected(
            "the image is too small for the watermark text", code="watermark_does_not_fit"
        ) from None


def parse_color(color: str) -> list[int]:
    """``#rgb`` or ``#rrggbb`` → [r, g, b]."""
    digits = color.removeprefix("#")
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return [int(digits[index : index + 2], 16) for index in (0, 2, 4)]
