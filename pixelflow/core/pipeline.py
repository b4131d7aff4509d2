"""Pipeline planning: how a job's steps connect, what each writes, how small the decode may be.

Pure functions over the step models (no pyvips, no I/O), so the imaging adapter only executes
what is decided here and the arithmetic is unit-tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal, TypeGuard

import msgspec
from msgspec import Struct

from pixelflow.core.errors import InvalidInput
from pixelflow.core.formats import OutputFormat, normalize_format
from pixelflow.core.models import ResizeStep, Step

DEFAULT_QUALITY = 80

# How far a shared decode may be shrunk while decoding (JPEG DCT scaling, WebP scale), as the
# headroom left for the final resample: `decode_shrink` keeps every resize's source at least
# this many times its output.
# - "fast" (1×): the largest power-of-two shrink not above the scale factor, as imgproxy and
#   thumbor's PIL `draft()` do; 4000 px → 800 px decodes at 1/4 (1000 px).
# - "quality" (2×): libvips `thumbnail`'s own margin; 4000 px → 800 px decodes at 1/2, four
#   times the pixels, so the DCT-domain shrink's slight aliasing is hidden by the resample.
# Measured on photo-12mp → 800 px against the same resize of a full-size decode (bench/quality.py,
# docs/benchmarks.md): fast 46.7 dB PSNR / SSIM 0.9947, quality 51.8 dB / 0.9980; the JPEG q80
# encode that follows costs far more (38.5 dB / 0.968), so "fast" is the default.
JpegShrink = Literal["fast", "quality"]
JPEG_SHRINK_MODES: tuple[JpegShrink, ...] = ("fast", "quality")
SHRINK_HEADROOM: dict[JpegShrink, float] = {"fast": 1.0, "quality": 2.0}
DEFAULT_JPEG_SHRINK: JpegShrink = "fast"
RESIZE_HEADROOM = SHRINK_HEADROOM["quality"]
# With "fast", a resize of the source may also start from an earlier resize of it at least this
# many times its size (``cascade``): the same margin as "quality" keeps, so the second resample
# still has the pixels it needs. On photo-12mp's 1600/800/320 px set, 800 px from 1600 px and
# 320 px from 800 px are within 0.4-0.8 dB of resampling the 2000 px decode each time (51.4 and
# 51.2 dB PSNR against a full-size decode's resize, 51.8 and 52.0 from the decode), where a
# lone "fast" 800 px job is at 46.7 dB; the 320 px resample costs a quarter of the CPU.
CASCADE_HEADROOM = RESIZE_HEADROOM
# Whether each mode lets a resize start from an earlier one (``cascade``).
CASCADE_RESIZES: dict[JpegShrink, bool] = {"fast": True, "quality": False}

# The reductions libjpeg can apply while decoding.
JPEG_SHRINKS = (8, 4, 2, 1)


class PlannedStep(Struct, frozen=True, kw_only=True):
    step: Step
    parent: str | None  # None: the job's source; otherwise the id of an earlier step
    format: OutputFormat
    quality: int
    # An earlier step whose pixels this one's are: the same transform of the same pixels (one
    # size written as JPEG and as WebP), computed once for both.
    same_as: str | None = None
    # A larger, earlier resize of the source this resize is computed from instead of the
    # source's decode (see ``cascade``).
    resample_from: str | None = None

    @property
    def id(self) -> str:
        return self.step.id

    @property
    def action(self) -> str:
        return str(self.step.__struct_config__.tag)

    @property
    def emit(self) -> bool:
        return self.step.emit

    @property
    def reads(self) -> str | None:
        """The result this step starts from: the first computation of its pixels if it repeats
        one, else the larger resize it is cascaded from, else its parent's."""
        if self.same_as is not None:
            return self.same_as
        return self.resample_from if self.resample_from is not None else self.parent


class Plan(Struct, frozen=True, kw_only=True):
    steps: tuple[PlannedStep, ...]

    def consumers(self, parent: str | None) -> tuple[PlannedStep, ...]:
        """The steps that read ``parent``'s result (``None``: the source)."""
        return tuple(planned for planned in self.steps if planned.parent == parent)


def plan_pipeline(steps: Sequence[Step], *, source_format: OutputFormat) -> Plan:
    """Resolve every step's parent, output format and quality.

    ``source_format`` is what the source was decoded from; a step without ``format`` writes it.
    """
    planned: list[PlannedStep] = []
    # Each step's pixels by the step that first computed them, and that step by its input's
    # pixels and its transform: a repeat (through any chain of repeats) is found in one look.
    pixels_of: dict[str, str] = {}
    first_by_transform: dict[tuple[str | None, bytes], str] = {}
    for index, step in enumerate(steps):
        if step.input is not None and step.input not in pixels_of:
            raise InvalidInput(
                f"pipeline[{index}].input {step.input!r} must name an earlier step",
                code="invalid_input_step",
            )
        parent_pixels = None if step.input is None else pixels_of[step.input]
        first = first_by_transform.setdefault((parent_pixels, _transform(step)), step.id)
        pixels_of[step.id] = first
        planned.append(
            PlannedStep(
                step=step,
                parent=step.input,
                format=normalize_format(step.format) if step.format else source_format,
                quality=step.quality if step.quality is not None else DEFAULT_QUALITY,
                same_as=None if first == step.id else first,
            )
        )
    return Plan(steps=tuple(planned))


def cascade(plan: Plan, width: int, height: int) -> Plan:
    """``plan`` with each plain resize of the source (``fit: inside``) computed from the
    smallest earlier plain resize of the same source that is at least ``CASCADE_HEADROOM``
    times its size (and no enlargement), instead of from the ``width``×``height`` decode: a
    responsive set resamples 800 px from 1600 px and 320 px from 800 px, not each from the
    full decode. Only earlier steps qualify, so the order of the steps decides what can be
    cascaded; a step repeating another (``same_as``) reads that one's pixels as before."""
    larger: list[tuple[float, str]] = []  # (reduction from the source, id) of plain resizes
    steps: list[PlannedStep] = []
    for planned in plan.steps:
        step = planned.step
        if planned.same_as is None and planned.parent is None and _plain_resize(step):
            reduction = resize_reduction(step, width, height)
            fitting = [
                (found, step_id)
                for found, step_id in larger
                if found >= 1 and reduction >= found * CASCADE_HEADROOM
            ]
            if fitting:
                # The most reduced of them: the fewest pixels to resample.
                planned = msgspec.structs.replace(planned, resample_from=max(fitting)[1])
            larger.append((reduction, planned.id))
        steps.append(planned)
    return Plan(steps=tuple(steps))


def _plain_resize(step: Step) -> TypeGuard[ResizeStep]:
    """A uniform scale of the whole image: its result stands for the source at a smaller size."""
    return isinstance(step, ResizeStep) and step.fit == "inside"


def _transform(step: Step) -> bytes:
    """What a step does to its input's pixels: everything but its name, its input and how its
    result is written (format, quality, metadata, whether it is written at all)."""
    return msgspec.json.encode(
        msgspec.structs.replace(
            step, id="", input=None, format=None, quality=None, emit=True, strip=True
        )
    )


def resize_reduction(step: ResizeStep, width: int, height: int) -> float:
    """How many times smaller than ``width``×``height`` the resize's output is on its least
    reduced axis (below 1 when it enlarges)."""
    ratios = [
        side / target
        for side, target in ((width, step.width), (height, step.height))
        if target is not None
    ]
    if step.fit in ("inside", "contain"):
        # The box's tighter side decides the scale; the other side shrinks further.
        return max(ratios)
    # cover and fill keep the box filled, so the looser side decides.
    return min(ratios)


def decode_shrink(
    consumers: Iterable[Step], width: int, height: int, *, headroom: float = RESIZE_HEADROOM
) -> float:
    """The largest factor the shared decode of a ``width``×``height`` (upright) image may be
    reduced by while every consumer still gets at least ``headroom`` times the pixels its
    output needs. Only resizes can use a reduced image: any other consumer forces 1."""
    factor = math.inf
    for step in consumers:
        if not isinstance(step, ResizeStep):
            return 1.0
        factor = min(factor, resize_reduction(step, width, height) / headroom)
    return 1.0 if math.isinf(factor) else max(1.0, factor)


def jpeg_shrink(factor: float) -> int:
    """The largest JPEG shrink-on-load that does not exceed ``factor``."""
    return next(shrink for shrink in JPEG_SHRINKS if shrink <= factor or shrink == 1)
