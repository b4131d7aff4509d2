"""Shared helpers for the imaging tests: build steps, read fixtures, decode outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pyvips

from pixelflow.adapters.imaging.protocol import ImageLimits, Rendered
from pixelflow.core.models import Step

LIMITS = ImageLimits(max_pixels=100_000_000, max_bytes=50 * 1024 * 1024)

# The libvips loader that recognises each output format: proof of what was really written.
LOADER_OF = {
    "jpeg": "jpegload_buffer",
    "png": "pngload_buffer",
    "webp": "webpload_buffer",
    "avif": "heifload_buffer",
    "gif": "gifload_buffer",
    "tiff": "tiffload_buffer",
}


def steps(*raw: dict[str, Any]) -> list[Step]:
    return msgspec.convert(list(raw), type=list[Step])


def read(fixtures_dir: Path, name: str) -> bytes:
    return (fixtures_dir / name).read_bytes()


def open_output(rendered: Rendered) -> Any:
    """Decode an output and check it is what the ``Rendered`` record claims."""
    image = pyvips.Image.new_from_buffer(rendered.data, "")
    assert image.get("vips-loader") == LOADER_OF[rendered.format]
    assert (image.width, image.height) == (rendered.width, rendered.height)
    return image


def mean_difference(a: Any, b: Any) -> float:
    assert (a.width, a.height, a.bands) == (b.width, b.height, b.bands)
    return float((a.cast("float") - b.cast("float")).abs().avg())
