"""What every output guarantees: format, quality, orientation, sRGB, alpha, metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pyvips

from pixelflow.adapters.imaging.vips import VipsImaging
from pixelflow.core.formats import CONTENT_TYPES, OUTPUT_FORMATS, OutputFormat
from tests.imaging.helpers import LIMITS, mean_difference, open_output, read, steps


async def render_one(imaging: VipsImaging, source: bytes, **step: Any) -> tuple[Any, Any]:
    [rendered] = await imaging.render(
        source, steps({"id": "s", "action": "convert", **step}), LIMITS
    )
    return rendered, open_output(rendered)


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
async def test_every_format(imaging: VipsImaging, fixtures_dir: Path, fmt: OutputFormat) -> None:
    rendered, image = await render_one(imaging, read(fixtures_dir, "rocket.jpg"), format=fmt)
    assert rendered.format == fmt
    assert rendered.content_type == CONTENT_TYPES[fmt]
    assert (image.width, image.height) == (640, 427)
    assert image.interpretation == "srgb"


async def test_jpg_is_jpeg(imaging: VipsImaging, fixtures_dir: Path) -> None:
    rendered, _ = await render_one(imaging, read(fixtures_dir, "chelsea.png"), format="jpg")
    assert (rendered.format, rendered.content_type) == ("jpeg", "image/jpeg")


@pytest.mark.parametrize(
    ("fixture", "fmt"),
    [
        ("rocket.jpg", "jpeg"),
        ("chelsea.png", "png"),
        ("coffee.webp", "webp"),
        ("coffee.avif", "avif"),
        ("animated.gif", "gif"),
        ("hubble.tiff", "tiff"),
    ],
)
async def test_absent_format_is_the_sources(
    imaging: VipsImaging, fixtures_dir: Path, fixture: str, fmt: str
) -> None:
    rendered, _ = await render_one(imaging, read(fixtures_dir, fixture))
    assert rendered.format == fmt


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
async def test_quality(imaging: VipsImaging, fixtures_dir: Path, fmt: str) -> None:
    source = read(fixtures_dir, "rocket.jpg")
    default, _ = await render_one(imaging, source, format=fmt)
    low, _ = await render_one(imaging, source, format=fmt, quality=20)
    high, _ = await render_one(imaging, source, format=fmt, quality=95)
    assert len(low.data) < len(default.data) < len(high.data)


class TestOrientation:
    @pytest.fixture
    def stored(self, fixtures_dir: Path) -> Any:
        """The astronaut as stored: lying on its side until EXIF orientation 6 is applied."""
        image = pyvips.Image.new_from_file(str(fixtures_dir / "astronaut-orientation-6.jpg"))
        assert image.get("orientation") == 6
        return image

    async def test_comes_out_upright(
        self, imaging: VipsImaging, fixtures_dir: Path, stored: Any
    ) -> None:
        _, image = await render_one(
            imaging, read(fixtures_dir, "astronaut-orientation-6.jpg"), format="png"
        )
        upright = stored.rot("d90")  # what orientation 6 asks a viewer to do
        assert mean_difference(image, upright) < 2
        assert mean_difference(image, stored.rot("d270")) > 20  # the test can tell them apart

    async def test_geometry_applies_to_the_upright_image(
        self, imaging: VipsImaging, fixtures_dir: Path, stored: Any
    ) -> None:
        [rendered] = await imaging.render(
            read(fixtures_dir, "astronaut-orientation-6.jpg"),
            steps(
                {
                    "id": "c",
                    "action": "crop",
                    "width": 300,
                    "height": 100,
                    "x": 0,
                    "y": 0,
                    "format": "png",
                }
            ),
            LIMITS,
        )
        image = open_output(rendered)
        assert (image.width, image.height) == (300, 100)
        assert mean_difference(image, stored.rot("d90").crop(0, 0, 300, 100)) < 2

    async def test_kept_metadata_does_not_rotate_it_again(
        self, imaging: VipsImaging, fixtures_dir: Path
    ) -> None:
        _, image = await render_one(
            imaging, read(fixtures_dir, "astronaut-orientation-6.jpg"), strip=False
        )
        assert image.get("orientation") == 1


@pytest.fixture
def chelsea(fixtures_dir: Path) -> bytes:
    return read(fixtures_dir, "chelsea.png")  # PNG with an sRGB profile


async def test_cmyk_comes_out_srgb(imaging: VipsImaging, fixtures_dir: Path) -> None:
    _, image = await render_one(imaging, read(fixtures_dir, "coffee-cmyk.jpg"), format="jpeg")
    assert (image.bands, image.interpretation) == (3, "srgb")
    # The same photo, stored as RGB: the colours must match it, not an inverted or raw CMYK.
    reference = pyvips.Image.new_from_file(str(fixtures_dir / "coffee.webp"))
    for band in range(3):
        assert abs(image[band].avg() - reference[band].avg()) < 16


class TestColourProfiles:
    async def test_adobe_rgb_is_converted(self, imaging: VipsImaging, fixtures_dir: Path) -> None:
        source = read(fixtures_dir, "rocket.jpg")  # embeds Adobe RGB (1998)
        _, image = await render_one(imaging, source, format="png")
        raw = pyvips.Image.new_from_buffer(source, "")
        assert mean_difference(image, raw.icc_transform("srgb", embedded=True)) < 1
        assert mean_difference(image, raw) > 2  # the test can tell converted from not

    async def test_srgb_is_left_as_it_is(self, imaging: VipsImaging, chelsea: bytes) -> None:
        _, image = await render_one(imaging, chelsea)
        assert mean_difference(image, pyvips.Image.new_from_buffer(chelsea, "")) == 0


class TestAlpha:
    @pytest.fixture
    def transparent(self) -> bytes:
        """A fully transparent blue PNG."""
        blue = pyvips.Image.black(20, 10, bands=3).linear(1, [0, 0, 255])
        return bytes(blue.bandjoin(0).cast("uchar").copy(interpretation="srgb").pngsave_buffer())

    async def test_flattened_onto_white_for_jpeg(
        self, imaging: VipsImaging, transparent: bytes, fixtures_dir: Path
    ) -> None:
        _, image = await render_one(imaging, transparent, format="jpeg")
        assert image.bands == 3
        assert image.getpoint(5, 5) == [255, 255, 255]
        _, logo = await render_one(imaging, read(fixtures_dir, "logo-alpha.png"), format="jpeg")
        assert logo.bands == 3

    @pytest.mark.parametrize("fmt", ["png", "webp", "avif", "gif", "tiff"])
    async def test_kept_elsewhere(self, imaging: VipsImaging, transparent: bytes, fmt: str) -> None:
        _, image = await render_one(imaging, transparent, format=fmt)
        assert image.hasalpha()
        assert image.getpoint(5, 5)[-1] == 0

    async def test_logo_keeps_its_alpha_band_in_png(
        self, imaging: VipsImaging, fixtures_dir: Path
    ) -> None:
        _, image = await render_one(imaging, read(fixtures_dir, "logo-alpha.png"), format="png")
        assert image.bands == 4


class TestMetadata:
    @pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
    async def test_stripped_by_default(
        self, imaging: VipsImaging, fixtures_dir: Path, fmt: str
    ) -> None:
        source = read(fixtures_dir, "astronaut-orientation-6.jpg")
        assert pyvips.Image.new_from_buffer(source, "").get_typeof("exif-data")
        _, image = await render_one(imaging, source, format=fmt)
        assert not image.get_typeof("exif-data")
        assert not image.get_typeof("icc-profile-data")

    @pytest.mark.parametrize("fmt", ["jpeg", "webp"])
    async def test_kept_with_strip_false(
        self, imaging: VipsImaging, fixtures_dir: Path, fmt: str
    ) -> None:
        source = read(fixtures_dir, "astronaut-orientation-6.jpg")
        _, image = await render_one(imaging, source, format=fmt, strip=False)
        assert image.get_typeof("exif-data")
