"""From untrusted bytes to one upright, sRGB, in-memory image — or a clear refusal.

The bytes are sniffed and checked against the limits from the header alone, so a
decompression bomb is refused before a single pixel is allocated.
"""

from __future__ import annotations

from typing import Any

import pyvips
from msgspec import Struct

from pixelflow.adapters.imaging import pillow_codecs
from pixelflow.adapters.imaging.icc import is_srgb
from pixelflow.adapters.imaging.protocol import ImageLimits
from pixelflow.core.errors import ImageRejected, SourceTooLarge
from pixelflow.core.formats import OutputFormat
from pixelflow.core.pipeline import jpeg_shrink


class Loader(Struct, frozen=True):
    operation: str  # the libvips loader called on the bytes
    format: OutputFormat  # what a step without `format` writes


# The only loaders untrusted bytes ever reach, keyed by the class libvips sniffs for them.
LOADERS: dict[str, Loader] = {
    "VipsForeignLoadJpegBuffer": Loader("jpegload_buffer", "jpeg"),
    "VipsForeignLoadPngBuffer": Loader("pngload_buffer", "png"),
    "VipsForeignLoadWebpBuffer": Loader("webpload_buffer", "webp"),
    "VipsForeignLoadNsgifBuffer": Loader("gifload_buffer", "gif"),
    "VipsForeignLoadTiffBuffer": Loader("tiffload_buffer", "tiff"),
    # HEIC sources are written as AVIF: libvips ships no HEVC encoder.
    "VipsForeignLoadHeifBuffer": Loader("heifload_buffer", "avif"),
}

# Their families, the unit libvips' operation blocklist works in.
LOADER_FAMILIES = (
    "VipsForeignLoadJpeg",
    "VipsForeignLoadPng",
    "VipsForeignLoadWebp",
    "VipsForeignLoadNsgif",
    "VipsForeignLoadTiff",
    "VipsForeignLoadHeif",
)

# EXIF orientations whose transform swaps width and height.
_TRANSPOSING = frozenset({5, 6, 7, 8})


class Source(Struct, frozen=True, kw_only=True):
    """What the header says, with width and height as the image will stand after autorot."""

    loader: Loader
    width: int
    height: int
    orientation: int = 1  # EXIF's, 1 when upright


def inspect(data: bytes, limits: ImageLimits) -> Source:
    """Identify ``data`` and check it against ``limits`` without decoding any pixels."""
    if not data:
        raise ImageRejected("the source is empty", code="invalid_image")
    if len(data) > limits.max_bytes:
        raise SourceTooLarge(
            f"the source is {len(data)} bytes; at most {limits.max_bytes} are allowed"
        )
    loader = _sniff(data)
    try:
        header = _load(loader, data)  # lazy: parses the header only
        width, height = int(header.width), int(header.height)
        orientation = _orientation(header)
    except pyvips.Error:
        raise ImageRejected("the source is not a readable image", code="invalid_image") from None
    # Animated GIF/WebP and multi-page TIFF/HEIF: only the first page is decoded (see
    # `decode`), so the first page is what is held against the limit.
    if width * height > limits.max_pixels:
        raise SourceTooLarge(
            f"the source is {width}×{height} pixels; at most {limits.max_pixels} are allowed"
        )
    if orientation in _TRANSPOSING:
        width, height = height, width
    return Source(loader=loader, width=width, height=height, orientation=orientation)


def decode(data: bytes, source: Source, shrink: float, *, keep_metadata: bool = False) -> Any:
    """Decode the first page of ``data`` once, reduced by up to ``shrink`` where the format
    can do it while decoding, upright and in 8-bit sRGB, into memory shared by every step
    that reads the source. ``keep_metadata``: an output keeps the source's metadata, which
    only libvips' decode carries (see ``pillow_codecs``)."""
    options: dict[str, Any] = {}
    factor = jpeg_shrink(shrink)
    if source.loader.format == "jpeg" and not keep_metadata:
        pixels = source.width * source.height
        image = pillow_codecs.decode_jpeg(data, pixels=pixels, shrink=factor)
        if image is not None:
            return _upright(image, source.orientation)
    if factor > 1 and source.loader.format == "jpeg":
        options["shrink"] = factor
    elif factor > 1 and source.loader.format == "webp":
        options["scale"] = 1 / factor
    try:
        image = _to_srgb(_load(source.loader, data, access="sequential", **options))
        image = image.copy_memory()  # decodes here: a truncated source fails here
        return _upright(image, source.orientation)
    except pyvips.Error:
        raise ImageRejected(
            "the source image is corrupt or truncated", code="invalid_image"
        ) from None


def _upright(image: Any, orientation: int) -> Any:
    """``image`` turned by the header's EXIF ``orientation``, whichever codec decoded it (the
    pixels from Pillow carry no metadata, so the orientation is set before ``autorot``)."""
    if orientation == 1:
        return image
    image = image.copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return image.autorot().copy_memory()


def _sniff(data: bytes) -> Loader:
    found = pyvips.vips_lib.vips_foreign_find_load_buffer(data, len(data))
    if found == pyvips.ffi.NULL:
        # libvips left "not in a known format" in its error buffer; nobody will read it.
        pyvips.vips_lib.vips_error_clear()
        raise ImageRejected("the source is not an image", code="invalid_image")
    name = pyvips.ffi.string(found).decode()
    loader = LOADERS.get(name)
    if loader is None:
        raise ImageRejected(
            "the source's format is not accepted: use JPEG, PNG, WebP, GIF, TIFF, HEIF or AVIF",
            code="invalid_image",
        )
    return loader


def _load(loader: Loader, data: bytes, **options: Any) -> Any:
    # fail_on="error": a damaged image is an error rather than silently grey rows.
    return pyvips.Operation.call(loader.operation, data, fail_on="error", **options)


def _orientation(image: Any) -> int:
    return int(image.get("orientation")) if image.get_typeof("orientation") else 1


def _to_srgb(image: Any) -> Any:
    """8-bit sRGB (plus alpha, if any), through the embedded ICC profile when there is one."""
    profile = image.get("icc-profile-data") if image.get_typeof("icc-profile-data") else None
    if profile is not None and not (image.interpretation == "srgb" and is_srgb(profile)):
        try:
            return image.icc_transform("srgb", embedded=True)
        except pyvips.Error:
            pass  # an unusable profile: convert as if there were none
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    return image if image.format == "uchar" else image.cast("uchar")
