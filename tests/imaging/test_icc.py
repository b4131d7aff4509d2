"""Telling sRGB profiles apart, on the profiles embedded in the sample images."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips

from pixelflow.adapters.imaging.icc import is_srgb


def profile_of(fixtures_dir: Path, name: str) -> bytes:
    image = pyvips.Image.new_from_file(str(fixtures_dir / name))
    return bytes(image.get("icc-profile-data"))


@pytest.fixture
def srgb(fixtures_dir: Path) -> bytes:
    return profile_of(fixtures_dir, "photo-12mp.jpg")  # the classic HP/IEC sRGB profile


def test_srgb_by_its_header(srgb: bytes) -> None:
    assert srgb[52:56] == b"sRGB"
    assert is_srgb(srgb)


def test_srgb_by_its_description(srgb: bytes) -> None:
    anonymous = srgb[:48] + bytes(8) + srgb[56:]
    assert is_srgb(anonymous)


def test_linear_srgb_is_not_srgb(srgb: bytes) -> None:
    linear = srgb[:48] + bytes(8) + srgb[56:]
    linear = linear.replace(b"sRGB IEC61966-2.1", b"linear sRGB 2.1  ")
    assert not is_srgb(linear)


@pytest.mark.parametrize("fixture", ["rocket.jpg", "coffee-cmyk.jpg"])
def test_other_profiles(fixtures_dir: Path, fixture: str) -> None:
    # Adobe RGB (1998) and a CMYK press profile.
    assert not is_srgb(profile_of(fixtures_dir, fixture))


@pytest.mark.parametrize("data", [b"", b"acsp", bytes(200), b"\xff" * 200])
def test_malformed_data_is_not_srgb(data: bytes) -> None:
    assert not is_srgb(data)
