"""Image transforms. Only the modules of this package import pyvips."""

from __future__ import annotations

from typing import Protocol

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


class Imaging(Protocol):
    async def render(
        self, source: bytes, pipeline: list[Step], limits: ImageLimits
    ) -> list[Rendered]:
        """Decode ``source`` once and run the pipeline, returning every emitted step's output
        in pipeline order. Runs libvips off the event loop. Raises ``SourceTooLarge`` before
        decoding when the header's dimensions or the byte size exceed ``limits``, and
        ``ImageRejected(code="invalid_image")`` for empty, truncated or non-image input or a
        format outside the allowlist."""
        ...

    async def close(self) -> None: ...
