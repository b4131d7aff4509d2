"""The suite's sample images, made from scikit-image's bundled photographs with pyvips.

Nothing outside the repository is read: ``write_sample_images`` writes every image the tests and
the benchmark use into a directory of the caller's choosing. ``tests/conftest.py`` calls it once
per test session into a ``tmp_path_factory`` directory (fixture ``fixtures_dir``), so a run never
sees images left by another run or another checkout, and there is no cache to go stale. Writing
all of them takes about 2.5 s on the 2-core development machine (most of it the two 12 MP JPEGs
and the 400 MP bomb's deflate); the 12 MP photo alone, for ``bench/``, about 1 s.

What each image is, and why the tests need it that way:

- ``photo-12mp.jpg``: 4000×3000 baseline JPEG q90 with an sRGB profile, about 4 MB. A 2×2 mosaic
  of real photos, upscaled, with film grain so it compresses and decodes like a camera photo:
  smart crop, shrink-on-load and the benchmark depend on real-photo content.
- ``photo-12mp-progressive.jpg``: the same photo, progressive (interlaced).
- ``photo-1080p.jpg``: the same photo at 1920×1440.
- ``astronaut-orientation-6.jpg``: 512×512, stored rotated with EXIF orientation 6: upright only
  after auto-orient.
- ``rocket.jpg``: 640×427, pixels in Adobe RGB (1998) with that profile embedded.
- ``coffee.webp``, ``coffee.avif``: 600×400.
- ``coffee-cmyk.jpg``: CMYK JPEG with libvips' CMYK press profile; must come out as sRGB.
- ``chelsea.png``: 451×300 RGB with an sRGB profile.
- ``logo-alpha.png``: 500×500 with an alpha channel (the scikit-image logo).
- ``hubble.tiff``: 1000×872.
- ``animated.gif``: 14×25, 24 frames.
- ``bad-truncated.jpg``: rocket.jpg cut at 60% of its bytes.
- ``bad-not-an-image.jpg``: text with a .jpg name.
- ``bad-empty.png``: zero bytes.
- ``bad-bomb-400mp.png``: 20000×20000 of one colour, about 390 KB on disk: a decompression bomb.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyvips
from skimage import data

from tests.support.icc import adobe_rgb_profile, srgb_profile

PHOTO_SIZE = (4000, 3000)
PHOTO_QUALITY = 90
PHOTO_1080P_SIZE = (1920, 1440)
BOMB_SIDE = 20_000

SAMPLE_IMAGES = (
    "photo-12mp.jpg",
    "photo-12mp-progressive.jpg",
    "photo-1080p.jpg",
    "astronaut-orientation-6.jpg",
    "rocket.jpg",
    "coffee.webp",
    "coffee.avif",
    "coffee-cmyk.jpg",
    "chelsea.png",
    "logo-alpha.png",
    "hubble.tiff",
    "animated.gif",
    "bad-truncated.jpg",
    "bad-not-an-image.jpg",
    "bad-empty.png",
    "bad-bomb-400mp.png",
)


def from_array(array: np.ndarray[Any, np.dtype[np.uint8]]) -> pyvips.Image:
    """A libvips image of an (height, width, bands) uint8 array, in sRGB."""
    height, width, bands = array.shape
    image = pyvips.Image.new_from_memory(
        np.ascontiguousarray(array).tobytes(), width, height, bands, "uchar"
    )
    return image.copy(interpretation="srgb")


def sample(loader: Callable[[], Any]) -> pyvips.Image:
    """One of scikit-image's bundled sample photos."""
    return from_array(np.asarray(loader(), dtype=np.uint8))


def with_profile(image: pyvips.Image, profile: bytes) -> pyvips.Image:
    tagged = image.copy()
    tagged.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
    return tagged


def photo_12mp() -> pyvips.Image:
    """Four real photos, each scaled to cover a quarter of 4000×3000, plus a little grain.

    Upscaling alone leaves the mosaic smooth (it would compress to a third of a camera photo's
    size and decode faster than one); the grain brings back the fine detail a sensor records."""
    width, height = PHOTO_SIZE
    tile_width, tile_height = width // 2, height // 2
    tiles = [
        sample(loader).thumbnail_image(
            tile_width, height=tile_height, crop=pyvips.Interesting.CENTRE
        )
        for loader in (data.astronaut, data.coffee, data.rocket, data.chelsea)
    ]
    mosaic = pyvips.Image.arrayjoin(tiles, across=2)
    grain = pyvips.Image.gaussnoise(width, height, sigma=6, mean=0, seed=42)
    photo = (mosaic + grain).cast("uchar")  # cast clips to 0..255
    return with_profile(photo.copy(interpretation="srgb"), srgb_profile())


def animated_gif() -> bytes:
    """24 frames of 14×25 sliding across the astronaut's face."""
    face = sample(data.astronaut).crop(160, 40, 200, 160).resize(0.5)
    frames = [face.crop(2 * index, 10, 14, 25) for index in range(24)]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 25)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [80] * 24)
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    return bytes(strip.gifsave_buffer())


def bomb_png(path: Path) -> None:
    """A 20000×20000 one-colour PNG. libvips streams it out a strip at a time, so the 400 MP are
    never held in memory, and deflate shrinks the constant rows to a few hundred KB."""
    black = pyvips.Image.black(BOMB_SIDE, BOMB_SIDE).cast("uchar")
    black.pngsave(str(path), compression=9, filter=pyvips.ForeignPngFilter.NONE, keep="none")


def write_sample_images(directory: Path) -> Path:
    """Write every image of ``SAMPLE_IMAGES`` into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    srgb = srgb_profile()

    photo = photo_12mp().copy_memory()  # encoded three times: decode the mosaic once
    photo.jpegsave(str(directory / "photo-12mp.jpg"), Q=PHOTO_QUALITY)
    progressive = directory / "photo-12mp-progressive.jpg"
    photo.jpegsave(str(progressive), Q=PHOTO_QUALITY, interlace=True)
    photo_1080p = photo.resize(PHOTO_1080P_SIZE[0] / PHOTO_SIZE[0], kernel="lanczos3")
    photo_1080p.jpegsave(str(directory / "photo-1080p.jpg"), Q=PHOTO_QUALITY)

    # Lying on its side as stored; orientation 6 asks a viewer to turn it 90° clockwise.
    astronaut = with_profile(sample(data.astronaut).rot("d270"), srgb).copy()
    astronaut.set_type(pyvips.GValue.gint_type, "orientation", 6)
    astronaut.jpegsave(str(directory / "astronaut-orientation-6.jpg"), Q=90)

    adobe_path = directory / ".adobe-rgb.icc"
    adobe_path.write_bytes(adobe_rgb_profile())
    rocket = with_profile(sample(data.rocket), srgb).icc_transform(
        str(adobe_path), embedded=True, intent="relative"
    )
    adobe_path.unlink()
    rocket_jpeg = bytes(rocket.jpegsave_buffer(Q=90))
    (directory / "rocket.jpg").write_bytes(rocket_jpeg)
    (directory / "bad-truncated.jpg").write_bytes(rocket_jpeg[: len(rocket_jpeg) * 6 // 10])

    coffee = sample(data.coffee)
    coffee.webpsave(str(directory / "coffee.webp"), Q=80)
    coffee.heifsave(str(directory / "coffee.avif"), Q=60, compression="av1", effort=2)
    cmyk = coffee.icc_transform("cmyk", input_profile="srgb", intent="relative")
    cmyk.jpegsave(str(directory / "coffee-cmyk.jpg"), Q=90)

    with_profile(sample(data.chelsea), srgb).pngsave(str(directory / "chelsea.png"))
    sample(data.logo).pngsave(str(directory / "logo-alpha.png"))
    with_profile(sample(data.hubble_deep_field), srgb).tiffsave(str(directory / "hubble.tiff"))
    (directory / "animated.gif").write_bytes(animated_gif())

    (directory / "bad-not-an-image.jpg").write_text("This is not an image.\n" * 29)
    (directory / "bad-empty.png").write_bytes(b"")
    bomb_png(directory / "bad-bomb-400mp.png")
    return directory
