"""Text watermarks, rendered by libvips (Pango) with the machine's DejaVu Sans, and laid over
the image by Pillow where that is the same work (see ``_stamp``)."""

from __future__ import annotations

import html
import math
import threading
from collections import OrderedDict
from typing import Any

import pyvips
from PIL import Image

from pixelflow.adapters.imaging.geometry import place, watermark_metrics
from pixelflow.core.errors import ImageRejected
from pixelflow.core.models import WatermarkOptions

FONT = "DejaVu Sans Bold"
# Text is measured once at this resolution, then drawn at the one that fits (see `_fit_dpi`).
_REFERENCE_DPI = 300
# Hinting makes size not quite proportional to resolution: a guess is corrected at most this
# many times before the search steps down one dpi at a time.
_MAX_RESCALES = 3


class TextMasks:
    """Rendered watermark masks, keyed by (text, font, box): the same mark on images of the
    same size is drawn once. Least recently used first out, bounded in entries and in bytes
    (a mask on a 100 MP image can be megabytes). Shared by the pool's threads."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 16 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._masks: OrderedDict[tuple[str, str, int, int], Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._masks)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, text: str, max_width: int, height: int) -> Any:
        """A one-line mask of ``text`` at the largest size that fits ``max_width``×``height``."""
        key = (text, FONT, max_width, height)
        with self._lock:
            mask = self._masks.get(key)
            if mask is not None:
                self._masks.move_to_end(key)
                return mask
        # Rendered outside the lock: two threads may both draw a new key, which is harmless.
        mask = render_text(text, max_width, height)
        self._remember(key, mask)
        return mask

    def _remember(self, key: tuple[str, str, int, int], mask: Any) -> None:
        size = mask.width * mask.height * mask.bands
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._masks:
                return
            self._masks[key] = mask
            self._bytes += size
            while len(self._masks) > self.max_entries or self._bytes > self.max_bytes:
                _, old = self._masks.popitem(last=False)
                self._bytes -= old.width * old.height * old.bands


def watermark(image: Any, options: WatermarkOptions, masks: TextMasks) -> Any:
    text_height, margin = watermark_metrics((image.width, image.height), options.size)
    mask = masks.get(options.text, max(1, image.width - 2 * margin), text_height)
    left, top = place(
        options.gravity, (image.width, image.height), (mask.width, mask.height), margin
    )
    color = parse_color(options.color)
    if _stampable(image, mask, left, top):
        return _stamp(image, mask, color, options.opacity, left, top)
    alpha = (mask * options.opacity).cast("uchar")
    ink = mask.new_from_image(color).copy(interpretation="srgb")
    marked = image.composite2(ink.bandjoin(alpha), "over", x=left, y=top)
    if not image.hasalpha():
        # Compositing always adds an alpha band; over an opaque image it is opaque everywhere.
        marked = marked.extract_band(0, n=image.bands)
    return marked if marked.format == image.format else marked.cast(image.format)


def _stampable(image: Any, mask: Any, left: int, top: int) -> bool:
    """Whether ``_stamp`` can lay ``mask`` at (left, top): 8-bit sRGB, with or without alpha
    (every decode gives that), and a mark wholly inside the image."""
    return (
        image.format == "uchar"
        and image.interpretation == "srgb"
        and image.bands in (3, 4)
        and left >= 0
        and top >= 0
        and left + mask.width <= image.width
        and top + mask.height <= image.height
    )


def _stamp(image: Any, mask: Any, color: list[int], opacity: float, left: int, top: int) -> Any:
    """The mark composited over the patch it covers by Pillow, and the patch put back.

    The same "over" as libvips' ``composite2`` to within two levels (Pillow rounds the alpha and
    the blend where libvips truncates), for a fraction of the cost: libvips' composite converts
    every pixel of the image to float and back, ~6 ms on an 800×600 image against ~1.5 ms for
    this (docs/benchmarks.md, ninth round), most of a watermark job's time after the decode."""
    size = (mask.width, mask.height)
    mode = "RGB" if image.bands == 3 else "RGBA"
    patch = Image.frombytes(mode, size, image.crop(left, top, *size).write_to_memory())
    alpha = Image.frombytes("L", size, mask.write_to_memory())
    alpha = alpha.point([round(level * opacity) for level in range(256)])
    if mode == "RGB":
        patch.paste(tuple(color), (0, 0, *size), alpha)
    else:
        ink = Image.new("RGBA", size, (*color, 0))
        ink.putalpha(alpha)
        patch = Image.alpha_composite(patch, ink)
    stamped = pyvips.Image.new_from_memory(patch.tobytes(), *size, image.bands, "uchar")
    # The result keeps ``image``'s header (interpretation, resolution): insert takes the main
    # image's.
    return image.insert(stamped, left, top)


def render_text(text: str, max_width: int, height: int) -> Any:
    """A one-line text mask at the largest size that fits ``max_width``×``height``, in memory.

    libvips can fit text itself (``text`` with both ``width`` and ``height``), but it does so
    by a search that renders ten times or more; text grows about linearly with resolution, so
    measuring once and scaling takes two or three renders (a third of the time).
    """
    # Pango reads markup: escape it, so "<" or "&" in a watermark is just text.
    markup = html.escape(text, quote=False)
    try:
        return _draw(markup, _fit_dpi(markup, max_width, height)).copy_memory()
    except pyvips.Error:
        raise ImageRejected(
            "the image is too small for the watermark text", code="watermark_does_not_fit"
        ) from None


def _fit_dpi(markup: str, max_width: int, height: int) -> int:
    dpi = _REFERENCE_DPI
    for _ in range(_MAX_RESCALES):
        drawn = _draw(markup, dpi)
        scale = min(max_width / drawn.width, height / drawn.height)
        if drawn.width <= max_width and drawn.height <= height and scale < 1.05:
            return dpi  # fits, and the next guess would be within hinting noise
        dpi = max(1, math.floor(dpi * scale))
    while dpi > 1:
        drawn = _draw(markup, dpi)
        if drawn.width <= max_width and drawn.height <= height:
            return dpi
        dpi -= 1
    raise ImageRejected(
        "the image is too small for the watermark text", code="watermark_does_not_fit"
    )


def _draw(markup: str, dpi: int) -> Any:
    return pyvips.Image.text(markup, font=FONT, dpi=dpi, wrap="none")


def parse_color(color: str) -> list[int]:
    """``#rgb`` or ``#rrggbb`` → [r, g, b]."""
    digits = color.removeprefix("#")
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return [int(digits[index : index + 2], 16) for index in (0, 2, 4)]
