"""Where things go on an image: crop boxes, gravity placement, watermark proportions.

Plain arithmetic, kept apart from the libvips calls so it can be tested without images.
"""

from __future__ import annotations

from typing import NamedTuple

from pixelflow.core.errors import ImageRejected
from pixelflow.core.models import Gravity

# A watermark's text height and margin scale with the image's shorter side, so the same
# step marks a thumbnail and a full-size photo alike.
DEFAULT_TEXT_SIZE = 0.05
MARGIN_SIZE = 0.025
# Below this the font rasteriser has nothing legible to draw.
MIN_TEXT_HEIGHT = 6


class Box(NamedTuple):
    left: int
    top: int
    width: int
    height: int


def place(
    gravity: Gravity, outer: tuple[int, int], inner: tuple[int, int], margin: int = 0
) -> tuple[int, int]:
    """Top-left corner of an ``inner`` (width, height) laid inside ``outer`` by ``gravity``,
    ``margin`` pixels away from the edges it is pushed against."""
    (outer_width, outer_height), (inner_width, inner_height) = outer, inner
    if gravity.endswith("west"):
        left = margin
    elif gravity.endswith("east"):
        left = outer_width - inner_width - margin
    else:
        left = (outer_width - inner_width) // 2
    if gravity.startswith("north"):
        top = margin
    elif gravity.startswith("south"):
        top = outer_height - inner_height - margin
    else:
        top = (outer_height - inner_height) // 2
    return left, top


def crop_box(
    image: tuple[int, int],
    size: tuple[int, int],
    *,
    gravity: Gravity | None = None,
    x: int | None = None,
    y: int | None = None,
) -> Box:
    """The region a crop of ``size`` takes from ``image`` (both (width, height)).

    A box larger than the image is clamped to it. With ``x``/``y`` the region starts there
    (a missing one counts as 0) and must start inside the image; otherwise it is placed by
    ``gravity``, centred by default.
    """
    (image_width, image_height), (width, height) = image, size
    if x is not None or y is not None:
        left, top = x or 0, y or 0
        if left >= image_width or top >= image_height:
            raise ImageRejected(
                f"crop region starts at ({left}, {top}), outside the "
                f"{image_width}×{image_height} image",
                code="crop_out_of_bounds",
            )
        return Box(left, top, min(width, image_width - left), min(height, image_height - top))
    width, height = min(width, image_width), min(height, image_height)
    left, top = place(gravity or "center", image, (width, height))
    return Box(left, top, width, height)


def watermark_metrics(image: tuple[int, int], size: float | None) -> tuple[int, int]:
    """(text height, margin) in pixels for a watermark on an ``image`` of (width, height);
    ``size`` is the text height as a fraction of the shorter side."""
    shorter = min(image)
    text_height = max(MIN_TEXT_HEIGHT, round(shorter * (size or DEFAULT_TEXT_SIZE)))
    return text_height, round(shorter * MARGIN_SIZE)
