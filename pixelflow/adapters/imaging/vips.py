"""``Imaging`` on libvips: decode once, run the step graph, encode each emitted step.

libvips is set to one thread per image and jobs run one per pool thread: on this workload
two images in two threads give 1.8-2x one image, while two libvips threads on one image give
next to nothing. The pool, not libvips, is where parallelism comes from.

A render stops when its caller stops waiting (a timeout, a lost lease, a cancel, a shutdown):
cancelling ``render`` sets the job's ``StopSignal``, which sets libvips' kill flag on the image
being evaluated, and ``render`` returns to its caller only once the pool thread is free
again, so the caller's slot is never handed on while libvips still works for the old job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import Any

import pyvips

from pixelflow.adapters.imaging import decode as decoding
from pixelflow.adapters.imaging.allocator import keep_freed_buffers
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
    CASCADE_RESIZES,
    DEFAULT_JPEG_SHRINK,
    SHRINK_HEADROOM,
    JpegShrink,
    PlannedStep,
    cascade,
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
        self._cascade = CASCADE_RESIZES[jpeg_shrink]
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
        handed: list[concurrent.futures.Future[None]] = []  # the output last handed to emit

        def emit_from_pool(rendered: Rendered) -> None:
            # The pool thread hands an output over and goes on to the next one; it waits only
            # for the handover before (taken by emit, or refused), so the renderer holds at most
            # two encoded outputs, and never sits idle while emit waits on a write in flight.
            if abandoned.is_set():
                raise _Abandoned
            assert emit is not None
            if handed:
                handed.pop().result()
            handed.append(asyncio.run_coroutine_threadsafe(emit(rendered), loop))

        sink = emit_from_pool if emit is not None else None
        stop = StopSignal()
        job = partial(
            render_job,
            source,
            pipeline,
            limits,
            on_step=on_step,
            headroom=self._headroom,
            cascade_resizes=self._cascade,
            masks=self.text_masks,
            emit=sink,
            stop=stop,
        )
        rendering = loop.run_in_executor(self._pool, job)
        try:
            # Shielded: cancelling this wait must not forget the thread, which keeps running.
            rendered = await asyncio.shield(rendering)
        except asyncio.CancelledError:
            # The caller gave up (timeout, lease lost, cancel, shutdown): the render must not
            # write outputs for an attempt that is over, and is stopped; the caller's slot is
            # held until the thread is free again.
            abandoned.set()
            stop.set()
            await _until_stopped(rendering)
            raise
        finally:
            # However the render ended, the last handover has reached emit before the caller
            # goes on (so a write it starts is one the caller knows of, and waits for).
            if handed:
                await _until_stopped(asyncio.wrap_future(handed[0]))
        if handed:
            handed.pop().result()  # refused (e.g. the outputs' size limit): raised here
        if emit is None:
            return rendered
        for output in rendered:  # the last output, handed back with the result
            await emit(output)
        return []

    def memory_in_use(self) -> int | None:
        return int(self._tracked_memory()) if self._tracked_memory is not None else None

    async def close(self) -> None:
        # Renders in flight were stopped by their cancelled callers; wait for the threads.
        await asyncio.to_thread(self._pool.shutdown, wait=True)


class RenderStopped(Exception):
    """The render was told to stop (its caller gave up on it); never reaches a job."""


class StopSignal:
    """Stops a render from another thread: between steps (``is_set``) and inside the libvips
    evaluation in flight, by setting the kill flag of the image it computes (registered with
    ``evaluating``). libvips checks that flag each time it prepares a region of the image,
    so the evaluation fails within a tile or two.

    Setting the flag from here, rather than checking ``is_set`` from libvips' ``eval`` progress
    signal, costs nothing while nobody stops the render: the signal called into Python every
    few tiles, about 200 times per four-output job, and took 6% of the job's CPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._evaluated: Any = None

    def is_set(self) -> bool:
        return self._stopped

    def set(self) -> None:
        with self._lock:
            self._stopped = True
            if self._evaluated is not None:
                self._evaluated.set_kill(True)

    @contextmanager
    def evaluating(self, image: Any, step_id: str) -> Iterator[Any]:
        """``image``, to be evaluated (copied or encoded) in the block; killed if the signal
        is set meanwhile. Only a reference is held, and only for the block."""
        with self._lock:
            if self._stopped:
                raise RenderStopped(step_id)
            self._evaluated = image
        try:
            yield image
        finally:
            with self._lock:
                self._evaluated = None


async def _until_stopped(rendering: asyncio.Future[Any]) -> None:
    """Wait for a stopped render's thread (or a handover) to end, whatever else cancels us
    meanwhile."""
    while not rendering.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([rendering])
    if not rendering.cancelled():
        rendering.exception()  # retrieved, so asyncio does not log it as never retrieved


def configure_libvips() -> None:
    """Process-wide libvips settings (idempotent), applied when an adapter is built."""
    keep_freed_buffers()
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
    cascade_resizes: bool = CASCADE_RESIZES[DEFAULT_JPEG_SHRINK],
    masks: TextMasks | None = None,
    emit: Callable[[Rendered], None] | None = None,
    stop: StopSignal | None = None,
) -> list[Rendered]:
    """The whole job, synchronously (in a pool thread). ``headroom``: see ``JpegShrink``;
    ``cascade_resizes``: let a resize start from a larger earlier one (see ``cascade``). With
    ``emit``, each output but the last is handed to it and not kept, and the last is returned:
    the caller hands it over as it would have been, without the thread waiting on the event
    loop for it while the job holds a slot. Without ``emit``, all are returned.
    Setting ``stop`` from another thread ends it early with ``RenderStopped``: between steps,
    and inside every libvips evaluation of a step or an encode (through the kill flag). The
    decode itself is not interruptible; it is bounded by the pixel limit checked before it."""
    started = time.time_ns()
    masks = TextMasks() if masks is None else masks
    header = decoding.inspect(source, limits)
    plan = plan_pipeline(pipeline, source_format=header.loader.format)
    shrink = decode_shrink(
        (p.step for p in plan.consumers(None)), header.width, header.height, headroom=headroom
    )
    if cascade_resizes:
        plan = cascade(plan, header.width, header.height)
    keep_metadata = any(planned.emit and not planned.step.strip for planned in plan.steps)
    decoded = decoding.decode(source, header, shrink, keep_metadata=keep_metadata)
    results: dict[str | None, Any] = {None: decoded}
    if on_step is not None:
        on_step(
            StepTiming(
                step_id="decode", action="decode", started_ns=started, ended_ns=time.time_ns()
            )
        )
    full_size = (header.width, header.height)  # what the possibly shrunk decode stands for
    # Results still to be read, so each is released after its last reader: chained steps, and
    # later steps that repeat it (``same_as``) and take its pixels as they are.
    pending = Counter(planned.reads for planned in plan.steps)
    rendered: list[Rendered] = []
    last_output = max((i for i, planned in enumerate(plan.steps) if planned.emit), default=-1)
    for index, planned in enumerate(plan.steps):
        started = time.time_ns()
        with _step_errors(planned, stop):
            if planned.same_as is not None:
                image = results[planned.same_as]
            else:
                # A resize cascaded from a larger one still aims at the source's proportions.
                source_size = full_size if planned.parent is None else None
                image = apply(planned.step, results[planned.reads], masks, source_size=source_size)
                _check_size(planned, image, limits)
                if pending[planned.id]:
                    # Read again later: compute it once, not once per reader.
                    with _killable(image, planned.id, stop) as evaluated:
                        image = evaluated.copy_memory()
            if pending[planned.id]:
                results[planned.id] = image
            if planned.emit:
                output = _encode(planned, image, stop)
                if emit is None or index == last_output:
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
        pending[planned.reads] -= 1
        if not pending[planned.reads]:
            del results[planned.reads]
    return rendered


def _killable(image: Any, step_id: str, stop: StopSignal | None) -> AbstractContextManager[Any]:
    """``image``, to be evaluated in the block, killed if ``stop`` is set meanwhile."""
    return nullcontext(image) if stop is None else stop.evaluating(image, step_id)


def _encode(planned: PlannedStep, image: Any, stop: StopSignal | None = None) -> Rendered:
    with _killable(prepare(image, planned.format), planned.id, stop) as prepared:
        data = encode(prepared, planned.format, quality=planned.quality, strip=planned.step.strip)
    return Rendered(
        step_id=planned.id,
        action=planned.action,
        format=planned.format,
        data=data,
        width=prepared.width,
        height=prepared.height,
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
def _step_errors(planned: PlannedStep, stop: StopSignal | None = None) -> Iterator[None]:
    """libvips' own messages stay inside: the job gets a short one naming the step."""
    if stop is not None and stop.is_set():
        raise RenderStopped(planned.id)
    try:
        yield
    except pyvips.Error:
        if stop is not None and stop.is_set():
            raise RenderStopped(planned.id) from None  # killed, not a bad image
        raise ImageRejected(
            f"step {planned.id!r} ({planned.action}) could not be processed",
            code="processing_failed",
        ) from None
