"""JPEG decoding and JPEG/WebP encoding through Pillow's codecs, where that is the same work.

The libvips wheel PixelFlow installs links mozjpeg; Pillow's wheel links libjpeg-turbo and its
own libwebp build. Measured on the benchmark machines (docs/benchmarks.md), Pillow decodes a
12 MP JPEG at 1/4 scale in 10-13% less CPU, writes an optimized-Huffman JPEG in 60-65% of the
time for the same file to within 0.1%, and writes byte-identical WebP files ~15% faster.
Everything between the decode and the encode stays in libvips; this module only moves pixels
in and out of it, and only where the result is what libvips would give:

- decode: 8-bit YCbCr JPEGs with no ICC profile or an sRGB one, decoded to at most
  ``MAX_DECODED_PIXELS``, for a job that keeps no metadata (these pixels come without the
  source's EXIF, XMP and profile). Anything else, and anything Pillow cannot read, is left to
  libvips (``None``), which also gives the verdict on a damaged file, so a job fails or
  succeeds as it would without this module;
- encode: 8-bit sRGB, RGB (JPEG) or RGB/RGBA (WebP), with every metadata block stripped.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import IO, Any

import pyvips
from PIL import Image

from pixelflow.adapters.imaging.icc import is_srgb
from pixelflow.core.formats import OutputFormat

# Pillow keeps RGB at four bytes a pixel and its pixels are then copied out, so its decode
# peaks at about twice libvips' memory: ~80 against 45 MiB for a 12 MP JPEG at full size. Where
# it pays (a JPEG shrunk on load: 1/4 of 12 MP costs 10-13% less CPU, and the same memory) the
# decoded image is small; larger ones are left to libvips, so a job's peak memory stays its own.
MAX_DECODED_PIXELS = 4_000_000
# libvips' default chroma subsampling: 4:2:0 below this quality, none from it up.
NO_SUBSAMPLING_FROM_QUALITY = 90
# Pillow's subsampling codes.
_SUBSAMPLE_420, _SUBSAMPLE_444 = 2, 0
# libwebp's effort (Pillow's ``method``) that libvips uses by default.
_WEBP_EFFORT = 4
_MM_PER_INCH = 25.4


def decode_jpeg(data: bytes, *, pixels: int, shrink: int) -> Any | None:
    """``data`` (a JPEG of ``pixels`` pixels) decoded at 1/``shrink`` scale, as an sRGB libvips
    image with the stored orientation (not yet upright); ``None`` when libvips must decode it.
    The pixels are libvips' shrink-on-load's: libjpeg scales each side rounding up, and libvips
    keeps the sides rounded down, so the extra row and column are cut off as libvips does."""
    ceiling = Image.MAX_IMAGE_PIXELS
    if ceiling is not None and pixels > ceiling:
        return None  # Pillow would warn about, or refuse, what PixelFlow's limits allowed
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as picture:
            if picture.mode != "RGB":  # CMYK, grayscale: libvips converts those
                return None
            profile = picture.info.get("icc_profile")
            if profile and not is_srgb(profile):
                return None
            width, height = picture.size
            kept = (width // shrink, height // shrink)
            if kept[0] * kept[1] > MAX_DECODED_PIXELS:
                return None
            if shrink > 1:
                picture.draft("RGB", kept)
                if picture.size != (-(-width // shrink), -(-height // shrink)):
                    return None  # not the scale libvips would take
            # The whole file in one call to the decoder, not 64 KiB at a time: one release of
            # the GIL instead of ~60, and ~2% less CPU for a 4 MB JPEG.
            picture.decodermaxblock = len(data) + 1
            picture.load()
            raw = picture.tobytes()
            decoded, dpi = picture.size, picture.info.get("dpi")
    except Exception:  # whatever Pillow makes of a damaged file, libvips gives the verdict
        return None
    image = pyvips.Image.new_from_memory(raw, *decoded, 3, "uchar")
    if decoded != kept:
        image = image.crop(0, 0, *kept)
    if dpi:  # libvips keeps the JFIF density as pixels per millimetre, and writes it back
        image = image.copy(xres=dpi[0] / _MM_PER_INCH, yres=dpi[1] / _MM_PER_INCH)
    return image.copy(interpretation="srgb")


def encodes(image: Any, fmt: OutputFormat, *, strip: bool) -> bool:
    """Whether ``encode`` writes ``image`` as ``fmt`` as libvips would."""
    if not strip or image.format != "uchar" or image.interpretation != "srgb":
        return False
    return (fmt == "jpeg" and image.bands == 3) or (fmt == "webp" and image.bands in (3, 4))


def encode(image: Any, fmt: OutputFormat, *, quality: int) -> bytes:
    """An image ``encodes`` accepts, written with no metadata. Evaluates ``image``."""
    mode = "RGB" if image.bands == 3 else "RGBA"
    size = (image.width, image.height)
    picture = Image.frombuffer(mode, size, image.write_to_memory(), "raw", mode, 0, 1)
    if fmt == "jpeg":
        subsampling = _SUBSAMPLE_444 if quality >= NO_SUBSAMPLING_FROM_QUALITY else _SUBSAMPLE_420
        # No ``dpi``: stripped of metadata, libvips writes no density either.
        return _save(picture, "JPEG", quality=quality, optimize=True, subsampling=subsampling)
    return _save(picture, "WEBP", quality=quality, method=_WEBP_EFFORT)


def _save(picture: Image.Image, fmt: str, **params: Any) -> bytes:
    # Pillow holds the GIL while it encodes into a Python buffer, but not while it encodes
    # into a file: a file in memory lets the other render thread and the event loop run.
    with _memory_file() as file:
        picture.save(file, fmt, **params)
        file.seek(0)
        return file.read()


def _memory_file() -> IO[bytes]:
    # Off Linux, or where a strict seccomp profile refuses memfd_create, a Python buffer: the
    # same bytes, with the GIL held while Pillow encodes.
    with contextlib.suppress(AttributeError, OSError):
        return open(os.memfd_create("pixelflow-encode"), "w+b")
    return io.BytesIO()
