"""One pipeline step applied to an in-memory image. Every operation is lazy: pixels are
computed when the result is encoded or kept for a chained step."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pyvips

from pixelflow.adapters.imaging.geometry import crop_box, largest_within, place, smallest_holding
from pixelflow.adapters.imaging.watermark import TextMasks, watermark
from pixelflow.core.models import (
    BlurStep,
    ConvertStep,
    CropStep,
    FlipStep,
    ResizeStep,
    RotateStep,
    SharpenStep,
    Step,
    WatermarkStep,
)

# libvips' largest coordinate: an unconstrained side of a resize box.
UNBOUNDED = 10_000_000


def apply(
    step: Step, image: Any, masks: TextMasks, *, source_size: tuple[int, int] | None = None
) -> Any:
    """``source_size``: the (width, height) ``image`` stands for when it is a shrunk decode."""
    match step:
        case ResizeStep():
            return resize(image, step, source_size)
        case WatermarkStep():
            return watermark(image, step.watermark, masks)
        case CropStep():
            return crop(image, step)
        case RotateStep():
            return image.rot(f"d{step.angle}")
        case FlipStep():
            return image.flip(step.direction)
        case BlurStep():
            return blur(image, step.sigma)
        case SharpenStep():
            return image.sharpen(sigma=step.sigma)
        case ConvertStep():
            return image
    raise AssertionError(f"unhandled step {step!r}")


def resize(image: Any, step: ResizeStep, source_size: tuple[int, int] | None = None) -> Any:
    """``thumbnail`` on the shared decode: shrink-on-load already happened there (see
    ``pixelflow.core.pipeline.decode_shrink``), and it resamples with alpha premultiplied.

    A shrunk decode rounds its sides down (a 640×427 JPEG at 1/2 is 320×213), so its aspect
    ratio is a little off: ``inside`` and ``contain`` then aim at the size the full image
    (``source_size``) gives, so the output's size does not depend on the decode.

    With ``upscale: false`` no pixel is ever enlarged and the box only bounds the output (see
    docs/pipeline.md): ``inside`` and ``fill`` shrink each side at most to the box, ``cover``
    cuts the box's aspect ratio out of an image smaller than the box, and ``contain`` pads
    only to the smallest canvas of the box's aspect ratio that holds the image."""
    width, height = step.width or UNBOUNDED, step.height or UNBOUNDED
    size = "both" if step.upscale else "down"
    if step.fit == "inside":
        return _fit_inside(image, (width, height), size, source_size)
    if step.fit == "cover":
        if not step.upscale:
            cut = largest_within((image.width, image.height), (width, height))
            if cut != (width, height):  # filling the box would enlarge: cut, do not scale
                left, top = place("center", (image.width, image.height), cut)
                return image.crop(left, top, *cut)
        return image.thumbnail_image(width, height=height, size=size, crop="centre", no_rotate=True)
    if step.fit == "fill":
        if not step.upscale:
            width, height = min(width, image.width), min(height, image.height)
        return image.thumbnail_image(width, height=height, size="force", no_rotate=True)
    # contain: fit inside, then pad to the box — transparent when the image has an alpha
    # channel, white otherwise (a JPEG's flattening would make it white anyway).
    inner = _fit_inside(image, (width, height), size, source_size)
    canvas = (width, height)
    if not step.upscale:
        canvas = smallest_holding((inner.width, inner.height), canvas)
    left, top = place("center", canvas, (inner.width, inner.height))
    background = [255, 255, 255, 0] if inner.hasalpha() else [255, 255, 255]
    return inner.embed(left, top, *canvas, extend="background", background=background)


def _fit_inside(
    image: Any, box: tuple[int, int], size: str, source_size: tuple[int, int] | None
) -> Any:
    width, height = box
    if source_size is None or source_size == (image.width, image.height):
        return image.thumbnail_image(width, height=height, size=size, no_rotate=True)
    full_width, full_height = _thumbnail_size(source_size, box, size)
    return image.thumbnail_image(full_width, height=full_height, size="force", no_rotate=True)


@lru_cache(maxsize=256)
def _thumbnail_size(
    source_size: tuple[int, int], box: tuple[int, int], size: str
) -> tuple[int, int]:
    """The size ``thumbnail`` gives a ``source_size`` image fitted inside ``box``, asked of
    libvips itself so the rounding is its own (nothing is computed from a black image that is
    never written). A pure function of its arguments, remembered: setting the thumbnail up
    costs ~1.5 ms, a fifth of the resize that follows, and a service sees the same few source
    and box sizes again and again."""
    full = pyvips.Image.black(*source_size).thumbnail_image(box[0], height=box[1], size=size)
    return full.width, full.height


def crop(image: Any, step: CropStep) -> Any:
    if step.gravity == "smart":
        width, height = min(step.width, image.width), min(step.height, image.height)
        return image.smartcrop(width, height, interesting="attention")
    box = crop_box(
        (image.width, image.height),
        (step.width, step.height),
        gravity=step.gravity,
        x=step.x,
        y=step.y,
    )
    return image.crop(*box)


def blur(image: Any, sigma: float) -> Any:
    if not image.hasalpha():
        return image.gaussblur(sigma)
    # Premultiplied, so the colour of fully transparent pixels does not bleed into the edges.
    return image.premultiply().gaussblur(sigma).unpremultiply().cast(image.format)
