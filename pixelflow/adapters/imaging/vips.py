"""``Imaging`` on libvips: decode once, run the step graph, encode each emitted step.

libvips is set to one thread per image and jobs run one per pool thread: on this workload
two images in two threads give 1.8-2x one image, while two libvips threads on one image give
next to nothing. The pool, not libvips, is where parallelism comes from.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import pyvips

from pixelflow.adapters.imaging import decode as decoding
from pixelflow.adapters.imaging.encode import encode, prepare
from pixelflow.adapters.imaging.operations import apply
from pixelflow.adapters.imaging.protocol import (
    Emit,
    ImageLimits,
    Rendered,
    StepObserver,
    StepTiming,
)
from pixelflow.adapters.imaging.watermark import TextMasks
from pixelflow.core.errors import ImageRejected
from pixelflow.core.formats import CONTENT_TYPES
from pixelflow.core.models import Step
from pixelflow.core.pipeline import (
    DEFAULT_JPEG_SHRINK,
    SHRINK_HEADROOM,
    JpegShrink,
    PlannedStep,
    decode_shrink,
    plan_pipeline,
)


class VipsImaging:
    def __init__(self, workers: int, *, jpeg_shrink: JpegShrink = DEFAULT_JPEG_SHRINK) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        configure_libvips()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixelflow-vips")
        self._tracked_memory = _tracked_memory_reader()
        self._headroom = SHRINK_HEADROOM[jpeg_shrink]
        self.text_masks = TextMasks()

    async def render(
        self,
        source: bytes,
        pipeline: list[Step],
        limits: ImageLimits,
        *,
        on_step: StepObserver | None = None,
        emit: Emit | None = None,
    ) -> list[Rendered]:
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()

        def emit_from_pool(rendered: Rendered) -> None:
            # The pool thread waits for the write, so only one encoded output is alive at once.
            if abandoned.is_set():
                raise _Abandoned
            assert emit is not None
            asyncio.run_coroutine_threadsafe(emit(rendered), loop).result()

        sink = emit_from_pool if emit is not None else None
        job = partial(
            render_job,
            source,
            pipeline,
            limits,
            on_step=on_step,
            headroom=self._headroom,
            masks=self.text_masks,
            emit=sink,
        )
        try:
            return await loop.run_in_executor(self._pool, job)
        except asyncio.CancelledError:
            # The caller gave up (timeout, cancel): the render may still be running in its
            # thread, and must not write outputs for an attempt that is over.
            abandoned.set()
            raise

    def memory_in_use(self) -> int | None:
        return int(self._tracked_memory()) if self._tracked_memory is not None else None

    async def close(self) -> None:
        # Waits for renders in flight: libvips cannot be interrupted halfway through an image.
        await asyncio.to_thread(self._pool.shutdown, wait=True)


def configure_libvips() -> None:
    """Process-wide libvips settings (idempotent), applied when an adapter is built."""
    pyvips.concurrency_set(1)
    # The operation cache would keep decoded sources and intermediates alive between jobs;
    # within a job, sharing is explicit (the decode and chained results are kept in memory).
    pyvips.cache_set_max(0)
    # Defence in depth: `decode` only ever calls allowlisted loaders, and every other loader
    # (and anything libvips marks untrusted) is refused by libvips itself too.
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for family in decoding.LOADER_FAMILIES:
        pyvips.operation_block_set(family, False)


def _tracked_memory_reader() -> Any:
    """libvips' own count of the pixel memory it holds (``vips_tracked_get_mem``), which
    pyvips does not expose: read through ctypes from the libvips pyvips already loaded."""
    try:
        import _libvips  # type: ignore[import-not-found]  # pyvips' compiled binding

        path: str | None = _libvips.__file__
    except ImportError:
        path = ctypes.util.find_library("vips")
    try:
        reader = ctypes.CDLL(path).vips_tracked_get_mem
    except (OSError, AttributeError, TypeError):
        return None
    reader.restype = ctypes.c_size_t
    reader.argtypes = []
    return reader


class _Abandoned(Exception):
    """The awaiting caller is gone; the render stops at its next output."""


def render_job(
    source: bytes,
    pipeline: Sequence[Step],
    limits: ImageLimits,
    *,
    on_step: StepObserver | None = None,
    headroom: float = SHRINK_HEADROOM[DEFAULT_JPEG_SHRINK],
    masks: TextMasks | None = None,
    emit: Callable[[Rendered], None] | None = None,
) -> list[Rendered]:
    """The whole job, synchronously (in a pool thread). ``headroom``: see ``JpegShrink``. With
    ``emit``, each output is handed to it and not kept; without, all are returned."""
    started = time.time_ns()
    masks = TextMasks() if masks is None else masks
    header = decoding.inspect(source, limits)
    plan = plan_pipeline(pipeline, source_format=header.loader.format)
    shrink = decode_shrink(
        (p.step for p in plan.consumers(None)), header.width, header.height, headroom=headroom
    )
    results: dict[str | None, Any] = {None: decoding.decode(source, header, shrink)}
    if on_step is not None:
        on_step(
            StepTiming(
                step_id="decode", action="decode", started_ns=started, ended_ns=time.time_ns()
            )
        )
    full_size = (header.width, header.height)  # what the possibly shrunk decode stands for
    # Results still to be read, so each is released after its last consumer.
    pending = Counter(planned.parent for planned in plan.steps)
    rendered: list[Rendered] = []
    for planned in plan.steps:
        started = time.time_ns()
        with _step_errors(planned):
            source_size = full_size if planned.parent is None else None
            image = apply(planned.step, results[planned.parent], masks, source_size=source_size)
            _check_size(planned, image, limits)
            if pending[planned.id]:
                # Chained steps read this result: compute it once, not once per reader.
                image = image.copy_memory()
                results[planned.id] = image
            if planned.emit:
                output = _encode(planned, image)
                if emit is None:
                    rendered.append(output)
                else:
                    emit(output)
                del output
        if on_step is not None:
            on_step(
                StepTiming(
                    step_id=planned.id,
                    action=planned.action,
                    started_ns=started,
                    ended_ns=time.time_ns(),
                )
            )
        pending[planned.parent] -= 1
        if not pending[planned.parent]:
            del results[planned.parent]
    return rendered


def _encode(planned: PlannedStep, image: Any) -> Rendered:
    image = prepare(image, planned.format)
    return Rendered(
        step_id=planned.id,
        action=planned.action,
        format=planned.format,
        data=encode(image, planned.format, quality=planned.quality, strip=planned.step.strip),
        width=image.width,
        height=image.height,
        content_type=CONTENT_TYPES[planned.format],
    )


def _check_size(planned: PlannedStep, image: Any, limits: ImageLimits) -> None:
    # Dimensions are known before any pixel is computed: refuse a result (an enlargement)
    # beyond the pixel budget before it takes the memory.
    if image.width * image.height > limits.max_pixels:
        raise ImageRejected(
            f"step {planned.id!r} would produce {image.width}×{image.height} pixels; "
            f"at most {limits.max_pixels} are allowed",
            code="output_too_large",
        )


@contextmanager
def _step_errors(planned: PlannedStep) -> Iterator[None]:
    """libvips' own messages stay inside: the job gets a short one naming the step."""
    try:
        yield
    except pyvips.Error:
        raise ImageRejected(
            f"step {planned.id!r} ({planned.action}) could not be processed",
            code="processing_failed",
        ) from None
