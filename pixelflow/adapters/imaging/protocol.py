"""Image transforms. Only the modules of this package import pyvips."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from msgspec import Struct

from pixelflow.core.formats import OutputFormat
from pixelflow.core.models import Step


class ImageLimits(Struct, kw_only=True, frozen=True):
    max_pixels: int
    max_bytes: int


class Rendered(Struct, kw_only=True):
    """One emitted step's encoded result."""

    step_id: str
    action: str
    format: OutputFormat
    data: bytes
    width: int
    height: int
    content_type: str


class StepTiming(Struct, kw_only=True, frozen=True):
    """When one step ran (wall clock, ns since the epoch): a trace span after the fact, since
    libvips runs in a pool thread where the job's span is not current. ``step_id`` is
    ``decode`` for the source's decode."""

    step_id: str
    action: str
    started_ns: int
    ended_ns: int


StepObserver = Callable[[StepTiming], None]
Emit = Callable[[Rendered], Coroutine[Any, Any, None]]


class Imaging(Protocol):
    async def render(
        self,
        source: bytes,
        pipeline: list[Step],
        limits: ImageLimits,
        *,
        on_step: StepObserver | None = None,
        emit: Emit | None = None,
    ) -> list[Rendered]:
        """Decode ``source`` once and run the pipeline, in pipeline order. With ``emit``, each
        emitted step's output is handed to it, in order, as soon as it is encoded and then
        dropped (the call returns ``[]``); the next output is encoded meanwhile, and handed over
        once ``emit`` has returned for the one before, so the renderer holds at most two encoded
        outputs, however many it makes (what ``emit`` keeps while it writes is its own affair).
        Every ``emit`` call has returned by the time ``render`` does, however it ends. An
        exception from ``emit`` stops the render and propagates. Without ``emit``, every output
        is returned. Runs libvips off the event loop. Raises ``SourceTooLarge`` before decoding
        when the header's dimensions or the byte size exceed ``limits``, and
        ``ImageRejected(code="invalid_image")`` for empty, truncated or non-image input or a
        format outside the allowlist. ``on_step`` is told of each step as it finishes (from the
        rendering thread). Cancelling it stops the render: the cancellation is raised only once
        no thread works for this render any more, so a caller's slot is never freed while the old
        render still runs."""
        ...

    def memory_in_use(self) -> int | None:
        """Bytes the image library holds for pixels now (``None``: it cannot tell)."""
        ...

    async def close(self) -> None: ...
