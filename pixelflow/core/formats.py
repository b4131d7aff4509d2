"""Output formats: names, aliases, file extensions and content types."""

from __future__ import annotations

from typing import Literal

# What a client may write in a step's ``format``; ``jpg`` is an alias of ``jpeg``.
FormatName = Literal["jpeg", "jpg", "png", "webp", "avif", "gif", "tiff"]
# What PixelFlow actually writes.
OutputFormat = Literal["jpeg", "png", "webp", "avif", "gif", "tiff"]

OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("jpeg", "png", "webp", "avif", "gif", "tiff")

EXTENSIONS: dict[OutputFormat, str] = {
    "jpeg": "jpg",
    "png": "png",
    "webp": "webp",
    "avif": "avif",
    "gif": "gif",
    "tiff": "tiff",
}

CONTENT_TYPES: dict[OutputFormat, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "gif": "image/gif",
    "tiff": "image/tiff",
}

# Formats whose encoders keep an alpha channel; others are flattened onto white.
ALPHA_FORMATS: frozenset[OutputFormat] = frozenset({"png", "webp", "avif", "gif", "tiff"})


def normalize_format(name: FormatName) -> OutputFormat:
    return "jpeg" if name == "jpg" else name


def output_key(job_id: str, step_id: str, fmt: OutputFormat) -> str:
    """Deterministic, so a retried attempt overwrites its earlier output instead of adding one."""
    return f"outputs/{job_id}/{step_id}.{EXTENSIONS[fmt]}"


def upload_key(job_id: str) -> str:
    return f"uploads/{job_id}/source"
