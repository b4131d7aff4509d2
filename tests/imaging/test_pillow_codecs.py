"""Pillow's JPEG decoder and JPEG/WebP encoders stand in for libvips' only where the result is
the same: same sizes, the same pixels to within the two libraries' rounding, the same
encoder settings, and every other image left to libvips."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import pyvips
from PIL import Image

from pixelflow.adapters.imaging import decode as decoding
from pixelflow.adapters.imaging import pillow_codecs
from pixelflow.adapters.imaging.encode import encode
from pixelflow.core.errors import ImageRejected
from pixelflow.core.formats import OutputFormat
from tests.imaging.helpers import LIMITS, mean_difference, read

JPEG_FIXTURES = [
    "photo-12mp.jpg",
    "photo-12mp-progressive.jpg",
    "photo-1080p.jpg",
    "astronaut-orientation-6.jpg",
    "rocket.jpg",
    "coffee-cmyk.jpg",
]


def _libvips_decode(data: bytes, shrink: int) -> Any:
    return pyvips.Image.jpegload_buffer(data, shrink=shrink).copy_memory()


@pytest.mark.parametrize(
    ("name", "shrink"),
    [
        ("photo-12mp.jpg", 2),
        ("photo-12mp.jpg", 4),
        ("photo-12mp.jpg", 8),
        ("photo-12mp-progressive.jpg", 4),
        ("photo-1080p.jpg", 2),
        ("photo-1080p.jpg", 1),  # 2.8 MP
        ("astronaut-orientation-6.jpg", 1),
    ],
)
def test_a_jpeg_decodes_to_what_libvips_decodes(fixtures_dir: Path, name: str, shrink: int) -> None:
    data = read(fixtures_dir, name)
    expected = _libvips_decode(data, shrink)
    image = pillow_codecs.decode_jpeg(data, pixels=expected.width * expected.height, shrink=shrink)
    assert image is not None, "an 8-bit sRGB JPEG is Pillow's to decode"
    assert (image.width, image.height, image.bands) == (expected.width, expected.height, 3)
    assert (image.format, image.interpretation) == ("uchar", "srgb")
    assert mean_difference(image, expected) == 0  # the same pixels, to the bit
    assert image.xres == pytest.approx(expected.xres)  # the density is written back out


@pytest.mark.parametrize("name", JPEG_FIXTURES)
def test_the_shared_decode_is_the_same_whichever_codec_reads_it(
    fixtures_dir: Path, name: str
) -> None:
    """``keep_metadata`` sends the decode to libvips: both come out upright, sRGB, alike."""
    data = read(fixtures_dir, name)
    source = decoding.inspect(data, LIMITS)
    for shrink in (1.0, 4.0):
        pillow = decoding.decode(data, source, shrink)
        libvips = decoding.decode(data, source, shrink, keep_metadata=True)
        assert (pillow.width, pillow.height) == (libvips.width, libvips.height)
        assert mean_difference(pillow, libvips) == 0


def test_an_upright_decode_from_pillow_turns_the_stored_pixels(fixtures_dir: Path) -> None:
    data = read(fixtures_dir, "astronaut-orientation-6.jpg")
    source = decoding.inspect(data, LIMITS)
    assert source.orientation == 6
    stored = pillow_codecs.decode_jpeg(data, pixels=512 * 512, shrink=1)
    assert stored is not None
    upright = decoding.decode(data, source, 1.0)
    assert mean_difference(upright, stored.rot("d90")) < 0.01
    assert mean_difference(upright, stored) > 10  # not already upright: the turn did it


def test_odd_sides_are_cut_as_libvips_cuts_them(fixtures_dir: Path) -> None:
    """libjpeg rounds a scaled side up and libvips down: the same pixels, to the bit."""
    photo = pyvips.Image.new_from_buffer(read(fixtures_dir, "photo-1080p.jpg"), "")
    data = photo.thumbnail_image(1003, height=757, size="force").jpegsave_buffer(Q=90)
    for shrink in (2, 4, 8):
        expected = _libvips_decode(data, shrink)
        assert (expected.width, expected.height) == (1003 // shrink, 757 // shrink)
        image = pillow_codecs.decode_jpeg(data, pixels=1003 * 757, shrink=shrink)
        assert image is not None
        assert (image.width, image.height) == (expected.width, expected.height)
        assert mean_difference(image, expected) == 0


def grey_jpeg() -> bytes:
    data: bytes = (
        pyvips.Image.gaussnoise(64, 48, mean=128, sigma=30).cast("uchar").jpegsave_buffer()
    )
    return data


@pytest.mark.parametrize(
    "name",
    [
        "rocket.jpg",  # an Adobe RGB profile: converted through it by libvips
        "coffee-cmyk.jpg",  # CMYK
        "chelsea.png",  # not a JPEG at all
    ],
)
def test_what_pillow_would_not_decode_the_same_is_left_to_libvips(
    fixtures_dir: Path, name: str
) -> None:
    assert pillow_codecs.decode_jpeg(read(fixtures_dir, name), pixels=1, shrink=1) is None


def test_a_greyscale_jpeg_is_left_to_libvips() -> None:
    assert pillow_codecs.decode_jpeg(grey_jpeg(), pixels=64 * 48, shrink=1) is None


def test_a_large_decode_is_left_to_libvips(fixtures_dir: Path) -> None:
    """12 MP at full size would take Pillow about twice libvips' memory; shrunk, it is small."""
    data = read(fixtures_dir, "photo-12mp.jpg")
    assert pillow_codecs.decode_jpeg(data, pixels=12_000_000, shrink=1) is None
    assert pillow_codecs.decode_jpeg(data, pixels=12_000_000, shrink=2) is not None


def test_more_pixels_than_pillow_allows_are_left_to_libvips(fixtures_dir: Path) -> None:
    data = read(fixtures_dir, "photo-1080p.jpg")
    too_many = (Image.MAX_IMAGE_PIXELS or 0) + 1
    assert pillow_codecs.decode_jpeg(data, pixels=too_many, shrink=1) is None


def test_a_damaged_jpeg_is_left_to_libvips_which_refuses_it(fixtures_dir: Path) -> None:
    """A truncated sRGB JPEG: Pillow gives up, and the job gets libvips' verdict."""
    whole = read(fixtures_dir, "photo-1080p.jpg")
    truncated = whole[: len(whole) * 6 // 10]
    source = decoding.inspect(truncated, LIMITS)
    assert pillow_codecs.decode_jpeg(truncated, pixels=1920 * 1440, shrink=1) is None
    with pytest.raises(ImageRejected) as refused:
        decoding.decode(truncated, source, 1.0)
    assert refused.value.code == "invalid_image"


# -- encoding -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo(fixtures_dir: Path) -> Any:
    return pyvips.Image.thumbnail_buffer(read(fixtures_dir, "photo-12mp.jpg"), 800).copy_memory()


def _libvips_encode(image: Any, fmt: OutputFormat, quality: int) -> bytes:
    data: bytes
    if fmt == "jpeg":
        data = image.jpegsave_buffer(Q=quality, optimize_coding=True, keep="none")
    else:
        data = image.webpsave_buffer(Q=quality, keep="none")
    return data


@pytest.mark.parametrize(
    ("fmt", "quality", "subsampling"),
    [("jpeg", 80, "4:2:0"), ("jpeg", 95, "4:4:4"), ("webp", 80, None)],
)
def test_an_output_encodes_as_libvips_would_write_it(
    photo: Any, fmt: OutputFormat, quality: int, subsampling: str | None
) -> None:
    assert pillow_codecs.encodes(photo, fmt, strip=True)
    data = encode(photo, fmt, quality=quality, strip=True)
    expected = _libvips_encode(photo, fmt, quality)
    written = pyvips.Image.new_from_buffer(data, "")
    assert written.get("vips-loader") == f"{fmt}load_buffer"
    assert abs(len(data) - len(expected)) / len(expected) < 0.02  # the same compression
    assert mean_difference(written, pyvips.Image.new_from_buffer(expected, "")) < 0.5
    fields = set(written.get_fields())
    assert not fields & {"exif-data", "xmp-data", "icc-profile-data", "iptc-data"}
    if subsampling is not None:
        assert written.get("jpeg-chroma-subsample") == subsampling
    # The resolution libvips would have written (JFIF stores whole dots per inch).
    assert written.xres == pytest.approx(pyvips.Image.new_from_buffer(expected, "").xres)


def test_a_webp_keeps_its_alpha(photo: Any) -> None:
    translucent = photo.bandjoin(photo.extract_band(1)).copy(interpretation="srgb")
    assert pillow_codecs.encodes(translucent, "webp", strip=True)
    written = pyvips.Image.new_from_buffer(encode(translucent, "webp", quality=80, strip=True), "")
    assert written.bands == 4
    assert mean_difference(written.extract_band(3), photo.extract_band(1)) < 1


@pytest.mark.parametrize(
    ("describe", "fmt", "strip"),
    [
        ("rgb", "png", True),  # PNG, AVIF, GIF and TIFF stay with libvips
        ("rgb", "jpeg", False),  # metadata to keep: libvips writes it
        ("rgba", "jpeg", True),  # never reached (flattened first), but not Pillow's
        ("ushort", "webp", True),  # 16-bit
        ("b-w", "jpeg", True),  # one band
    ],
)
def test_other_outputs_stay_with_libvips(
    photo: Any, describe: str, fmt: OutputFormat, strip: bool
) -> None:
    image = {
        "rgb": photo,
        "rgba": photo.bandjoin(255).copy(interpretation="srgb"),
        "ushort": photo.cast("ushort").copy(interpretation="rgb16"),
        "b-w": photo.colourspace("b-w"),
    }[describe]
    assert not pillow_codecs.encodes(image, fmt, strip=strip)


def test_without_memfd_create_an_output_is_written_all_the_same(
    photo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seccomp profile may refuse memfd_create: the encode falls back to a Python buffer."""
    expected = encode(photo, "jpeg", quality=80, strip=True)

    def refused(name: str, flags: int = 0) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "memfd_create", refused)
    assert encode(photo, "jpeg", quality=80, strip=True) == expected
