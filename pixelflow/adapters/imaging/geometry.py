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


def largest_within(image: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest (width, height) with ``box``'s aspect ratio that fits inside ``image``, and
    never larger than ``box``: what ``cover`` without enlarging cuts out of a small image."""
    (image_width, image_height), (box_width, box_height) = image, box
    scale = min(1.0, image_width / box_width, image_height / box_height)
    return (
        min(image_width, max(1, round(box_width * scale))),
        min(image_height, max(1, round(box_height * scale))),
    )


def smallest_holding(inner: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The smallest (width, height) with ``box``'s aspect ratio that holds ``inner``, and never
    larger than ``box``: the canvas ``contain`` without enlarging pads a small image out to."""
    (inner_width, inner_height), (box_width, box_height) = inner, box
    scale = min(1.0, max(inner_width / box_width, inner_height / box_height))
    return (
        max(inner_width, round(box_width * scale)),
        max(inner_height, round(box_height * scale)),
    )


def crop_box(
    image: tuple[int, int],
    size: tuple[int, int],
    *,
    gravity: Gravity | None = None,
    x: int | None = None,
    y: int | None = None,
) -> Box:
    """The region a crop of ``size`` takes from ``image`` (both (width, height)).

    With ``x``/``y`` (a missing one counts as 0) the caller names an exact region, so all of
    it must lie inside the image: a region reaching past an edge is refused, never silently
    clipped. Placed by ``gravity`` (centred by default), a box larger than the image is
    clamped to it, as the caller did not claim to know the image's size.
    """
    (image_width, image_height), (width, height) = image, size
    if x is not None or y is not None:
        left, top = x or 0, y or 0
        if left + width > image_width or top + height > image_height:
            raise ImageRejected(
                f"crop region {width}×{height} at ({left}, {top}) does not fit inside the "
                f"{image_width}×{image_height} image",
                code="crop_out_of_bounds",
            )
        return Box(left, top, width, height)
    width, height = min(width, image_width), min(height, image_height)
    left, top = place(gravity or "center", image, (width, height))
    return Box(left, top, width, height)


def watermark_metrics(image: tuple[int, int], size: float | None) -> tuple[int, int]:
    """(text height, margin) in pixels for a watermark on an ``image`` of (width, height);
    ``size`` is the text height as a fraction of the shorter side."""
    shorter = min(image)
    text_height = max(MIN_TEXT_HEIGHT, round(shorter * (size or DEFAULT_TEXT_SIZE)))
    return text_height, round(shorter * MARGIN_SIZE)
