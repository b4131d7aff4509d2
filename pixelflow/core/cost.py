"""What a pipeline may cost, estimated at create time, before any byte of the source exists.

The source's dimensions are unknown when a job is created, so the estimate assumes the largest
source the limits admit (``PIXELFLOW_MAX_SOURCE_PIXELS``) and follows each step's output size:
a resize or crop to a known box shrinks (or enlarges) it, a resize naming one side assumes the
other is at most 16384 px (the longest a request may name), other steps keep their input's
size. A pipeline whose estimate exceeds the job timeout cannot finish on a worst-case source and
is refused (the timeout itself stays the backstop for what the estimate cannot see): a 2×2 PNG
enlarged to 6000×6000 and blurred three times at σ=100 is refused in microseconds instead of
holding a worker for many minutes.

Constants, measured with libvips 8.18 in one thread (as the worker runs it) on this project's
2-core build machine under load, in seconds per megapixel of the step's output:

- decode: JPEG 25 ms/MP (photo-12mp.jpg).
- encode, through ``encode.prepare``/``encode.encode`` (photo-1080p.jpg): jpeg 27, png 218,
  webp 281, avif 1042 (effort 2), gif 3415 (palette quantisation), tiff 264 ms/MP.
- gaussian blur on a premultiplied (alpha) image, which libvips runs in float: σ=1 32, σ=10 409,
  σ=30 1255, σ=100 8967 ms/MP; an opaque image takes the integer path, 2-120x faster, but the
  format is unknown at create time. Fitted by 35·σ + 0.55·σ² ms/MP (within 25%, above at σ=30).
- sharpen: σ=1 66, σ=10 130 ms/MP: 60 + 7·σ ms/MP.
- resize, crop, rotate, flip, watermark: at most ~20 ms/MP of output.

The worst-case assumption is deliberate: a photo blurred at σ=100 *before* a resize is refused
(on a 100 MP source it would take about 15 minutes); resizing first makes the same effect cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct

from pixelflow.core.errors import InvalidInput
from pixelflow.core.formats import normalize_format
from pixelflow.core.models import (
    BlurStep,
    CropStep,
    ResizeStep,
    RotateStep,
    SharpenStep,
    Step,
)

MP = 1_000_000
# The longest side a step may ask for (models.Dimension).
MAX_SIDE = 16384
DECODE_S_PER_MP = 0.025
TRANSFORM_S_PER_MP = 0.020
ENCODE_S_PER_MP = {
    "jpeg": 0.027,
    "png": 0.218,
    "webp": 0.281,
    "avif": 1.042,
    "gif": 3.415,
    "tiff": 0.264,
}
# No `format`: the output takes the source's, unknown here. A typical encoder's cost, not GIF's:
# assuming the worst would refuse every format-less pipeline on a large source.
SOURCE_FORMAT_S_PER_MP = 0.281


class StepCost(Struct, frozen=True, kw_only=True):
    index: int
    pixels: int
    seconds: float


def blur_seconds_per_mp(sigma: float) -> float:
    return (35 * sigma + 0.55 * sigma**2) / 1000


def sharpen_seconds_per_mp(sigma: float) -> float:
    return (60 + 7 * sigma) / 1000


class Size(Struct, frozen=True):
    """An upper bound on a result's pixels, and its sides when a step fixed them."""

    pixels: int
    width: int | None = None
    height: int | None = None


def output_size(step: Step, parent: Size, *, max_pixels: int) -> Size:
    """An upper bound on the step's output size (never above the pixel limit, which the worker
    enforces on every result)."""
    if isinstance(step, CropStep):
        size = Size(min(parent.pixels, step.width * step.height), step.width, step.height)
    elif isinstance(step, ResizeStep):
        size = _resized(step, parent, max_pixels)
        if not step.upscale and size.pixels > parent.pixels:
            size = Size(parent.pixels, size.width, size.height)
    elif isinstance(step, RotateStep) and step.angle in (90, 270):
        size = Size(parent.pixels, parent.height, parent.width)
    else:
        size = parent
    return Size(min(size.pixels, max_pixels), size.width, size.height)


def _resized(step: ResizeStep, parent: Size, max_pixels: int) -> Size:
    if step.width is not None and step.height is not None:
        return Size(step.width * step.height, step.width, step.height)
    # One side fixed: the other follows the input's aspect ratio. Known when an earlier step
    # fixed the same side (the area scales with the square of the ratio); otherwise assumed to
    # be at most the longest side a request may name (a 100 MP strip 100 px wide could make
    # it longer, but then the job timeout, not this estimate, is what bounds it).
    if step.width is not None:
        if parent.width:
            return Size(parent.pixels * step.width**2 // parent.width**2, step.width, None)
        return Size(step.width * MAX_SIDE, step.width, None)
    assert step.height is not None  # validation requires one side
    if parent.height:
        return Size(parent.pixels * step.height**2 // parent.height**2, None, step.height)
    return Size(step.height * MAX_SIDE, None, step.height)


def step_seconds(step: Step, pixels: int) -> float:
    megapixels = pixels / MP
    if isinstance(step, BlurStep):
        work = blur_seconds_per_mp(step.sigma)
    elif isinstance(step, SharpenStep):
        work = sharpen_seconds_per_mp(step.sigma)
    else:
        work = TRANSFORM_S_PER_MP
    if step.emit:
        fmt = normalize_format(step.format) if step.format else None
        work += ENCODE_S_PER_MP[fmt] if fmt else SOURCE_FORMAT_S_PER_MP
    return megapixels * work


def estimate(steps: Sequence[Step], *, max_pixels: int) -> list[StepCost]:
    """Each step's worst-case output size and cost; the decode is counted in the first."""
    source = Size(max_pixels)
    sizes: dict[str | None, Size] = {None: source}
    costs: list[StepCost] = []
    for index, step in enumerate(steps):
        size = output_size(step, sizes.get(step.input, source), max_pixels=max_pixels)
        sizes[step.id] = size
        pixels = size.pixels
        seconds = step_seconds(step, pixels)
        if index == 0:
            seconds += max_pixels / MP * DECODE_S_PER_MP
        costs.append(StepCost(index=index, pixels=pixels, seconds=seconds))
    return costs


def check_cost(steps: Sequence[Step], *, max_pixels: int, budget_seconds: float) -> float:
    """The pipeline's estimated seconds on a worst-case source, or ``InvalidInput`` with code
    ``pipeline_too_costly`` naming the step that takes the total past ``budget_seconds``."""
    total = 0.0
    for cost in estimate(steps, max_pixels=max_pixels):
        total += cost.seconds
        if total > budget_seconds:
            step = steps[cost.index]
            raise InvalidInput(
                f"pipeline[{cost.index}] ({step.__struct_config__.tag}) brings the estimated "
                f"cost to {total:.0f} s on the largest allowed source "
                f"({max_pixels / MP:g} MP), past the budget of {budget_seconds:g} s "
                "(PIXELFLOW_PIPELINE_BUDGET, by default the job timeout): resize before "
                "costly steps, or use smaller sigmas or output sizes",
                code="pipeline_too_costly",
                details={"step": cost.index, "estimated_seconds": round(total, 1)},
            )
    return total
