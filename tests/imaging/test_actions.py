"""Every pipeline action on real images, checked on the decoded outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pyvips

from pixelflow.adapters.imaging.vips import VipsImaging
from pixelflow.core.errors import ImageRejected
from tests.imaging.helpers import LIMITS, mean_difference, open_output, read, steps

# chelsea.png (451×300) is lossless in and out, so pixels can be compared exactly.
CHELSEA = (451, 300)


async def render_one(
    imaging: VipsImaging, source: bytes, step: dict[str, Any], fmt: str = "png"
) -> Any:
    [rendered] = await imaging.render(source, steps({"id": "s", "format": fmt, **step}), LIMITS)
    return open_output(rendered)


@pytest.fixture(scope="module")
def chelsea(fixtures_dir: Path) -> bytes:
    return read(fixtures_dir, "chelsea.png")


@pytest.fixture(scope="module")
def chelsea_pixels(chelsea: bytes) -> Any:
    return pyvips.Image.new_from_buffer(chelsea, "").copy_memory()


class TestResize:
    @pytest.mark.parametrize(
        ("params", "size"),
        [
            ({"width": 200}, (200, 133)),
            ({"height": 100}, (150, 100)),
            ({"width": 200, "height": 50}, (75, 50)),  # inside: fits the tighter side
            ({"width": 200, "height": 50, "fit": "cover"}, (200, 50)),
            ({"width": 200, "height": 50, "fit": "fill"}, (200, 50)),
            ({"width": 200, "height": 50, "fit": "contain"}, (200, 50)),
            ({"width": 900}, (900, 599)),  # upscale is on by default
            ({"width": 900, "upscale": False}, CHELSEA),
        ],
    )
    async def test_dimensions(
        self, imaging: VipsImaging, chelsea: bytes, params: dict[str, Any], size: tuple[int, int]
    ) -> None:
        image = await render_one(imaging, chelsea, {"action": "resize", **params})
        assert (image.width, image.height) == size

    async def test_contain_pads_with_white(self, imaging: VipsImaging, chelsea: bytes) -> None:
        image = await render_one(
            imaging, chelsea, {"action": "resize", "width": 300, "height": 300, "fit": "contain"}
        )
        assert (image.width, image.height, image.bands) == (300, 300, 3)
        assert image.getpoint(150, 0) == [255, 255, 255]  # padding above the 300×200 photo
        assert image.getpoint(150, 150) != [255, 255, 255]

    async def test_contain_pads_an_image_with_alpha_with_transparency(
        self, imaging: VipsImaging, fixtures_dir: Path
    ) -> None:
        logo = read(fixtures_dir, "logo-alpha.png")
        image = await render_one(
            imaging, logo, {"action": "resize", "width": 200, "height": 100, "fit": "contain"}
        )
        assert image.bands == 4
        assert image.getpoint(0, 50)[3] == 0
        assert image.getpoint(100, 50)[3] == 255


class TestWithoutEnlarging:
    """``upscale: false`` with a box larger than the 451×300 image, mode by mode."""

    @pytest.mark.parametrize(
        ("params", "size"),
        [
            ({"width": 900, "height": 900}, CHELSEA),  # inside: the image as it is
            ({"width": 200, "height": 900}, (200, 133)),  # still shrinks to the tighter side
            ({"width": 900, "height": 100, "fit": "fill"}, (451, 100)),  # each axis down only
            ({"width": 200, "height": 900, "fit": "fill"}, (200, 300)),
            ({"width": 1000, "height": 1000, "fit": "cover"}, (300, 300)),  # the box's aspect
            ({"width": 900, "height": 200, "fit": "cover"}, (451, 100)),
            ({"width": 900, "height": 400, "fit": "contain"}, (675, 300)),  # not 900×400
            ({"width": 300, "height": 900, "fit": "contain"}, (300, 900)),  # shrinks, then pads
        ],
    )
    async def test_dimensions(
        self, imaging: VipsImaging, chelsea: bytes, params: dict[str, Any], size: tuple[int, int]
    ) -> None:
        image = await render_one(imaging, chelsea, {"action": "resize", "upscale": False, **params})
        assert (image.width, image.height) == size

    async def test_cover_cuts_the_centre_without_scaling(
        self, imaging: VipsImaging, chelsea: bytes, chelsea_pixels: Any
    ) -> None:
        image = await render_one(
            imaging,
            chelsea,
            {"action": "resize", "width": 1000, "height": 1000, "fit": "cover", "upscale": False},
        )
        assert mean_difference(image, chelsea_pixels.crop(75, 0, 300, 300)) == 0

    async def test_contain_pads_the_unscaled_image_to_the_box_aspect(
        self, imaging: VipsImaging, chelsea: bytes, chelsea_pixels: Any
    ) -> None:
        image = await render_one(
            imaging,
            chelsea,
            {"action": "resize", "width": 900, "height": 400, "fit": "contain", "upscale": False},
        )
        left = (675 - 451) // 2
        assert mean_difference(image.crop(left, 0, *CHELSEA), chelsea_pixels) == 0
        assert image.crop(0, 0, left, 300).min() == 255  # white bands either side
        assert image.crop(left + 451, 0, 675 - left - 451, 300).min() == 255

    async def test_a_box_the_image_fills_is_the_plain_resize(
        self, imaging: VipsImaging, chelsea: bytes
    ) -> None:
        for fit in ("cover", "contain", "fill"):
            box = {"action": "resize", "width": 200, "height": 100, "fit": fit}
            enlarging = await render_one(imaging, chelsea, box)
            never = await render_one(imaging, chelsea, {**box, "upscale": False})
            assert mean_difference(enlarging, never) == 0, fit


class TestWatermark:
    async def changed_region(
        self, imaging: VipsImaging, source: bytes, mark: dict[str, Any]
    ) -> Any:
        """(left, top, width, height) of the pixels the watermark changed."""
        image = await render_one(imaging, source, {"action": "watermark", "watermark": mark})
        plain = pyvips.Image.new_from_buffer(source, "")
        changed = ((image - plain).abs() > 0).bandor()
        return changed.find_trim(threshold=0, background=[0])

    async def test_default_is_bottom_right(self, imaging: VipsImaging, chelsea: bytes) -> None:
        left, top, width, height = await self.changed_region(imaging, chelsea, {"text": "Pixel"})
        assert width > 0 and height > 0
        assert left > CHELSEA[0] / 2 and top > CHELSEA[1] * 3 / 4
        assert left + width < CHELSEA[0] and top + height < CHELSEA[1]  # inside the margin

    async def test_gravity(self, imaging: VipsImaging, chelsea: bytes) -> None:
        left, top, width, _ = await self.changed_region(
            imaging, chelsea, {"text": "Pixel", "gravity": "northwest"}
        )
        assert 0 < left < CHELSEA[0] / 4 and 0 < top < CHELSEA[1] / 4
        assert width > 0

    async def test_size_is_a_fraction_of_the_shorter_side(
        self, imaging: VipsImaging, chelsea: bytes
    ) -> None:
        *_, small = await self.changed_region(imaging, chelsea, {"text": "Pixel", "size": 0.05})
        *_, large = await self.changed_region(imaging, chelsea, {"text": "Pixel", "size": 0.2})
        assert small <= 0.05 * CHELSEA[1] + 1
        assert 0.1 * CHELSEA[1] < large <= 0.2 * CHELSEA[1] + 1

    async def test_long_text_stays_inside_the_image(
        self, imaging: VipsImaging, chelsea: bytes
    ) -> None:
        left, _, width, _ = await self.changed_region(
            imaging, chelsea, {"text": "a watermark far too long for one line " * 4, "size": 0.3}
        )
        assert left > 0 and left + width < CHELSEA[0]

    async def test_color_and_opacity(self, imaging: VipsImaging, fixtures_dir: Path) -> None:
        white = pyvips.Image.black(300, 200, bands=3).invert().copy(interpretation="srgb")
        source = white.pngsave_buffer()
        mark = {"text": "█████", "color": "#f00", "gravity": "center", "size": 0.3}
        opaque = await render_one(
            imaging, source, {"action": "watermark", "watermark": {**mark, "opacity": 1}}
        )
        faint = await render_one(
            imaging, source, {"action": "watermark", "watermark": {**mark, "opacity": 0.5}}
        )
        assert opaque.getpoint(150, 100) == [255, 0, 0]
        red, green, blue = faint.getpoint(150, 100)
        assert red == 255 and 120 < green < 136 and green == blue

    async def test_zero_opacity_changes_nothing(self, imaging: VipsImaging, chelsea: bytes) -> None:
        image = await render_one(
            imaging, chelsea, {"action": "watermark", "watermark": {"text": "x", "opacity": 0}}
        )
        assert mean_difference(image, pyvips.Image.new_from_buffer(chelsea, "")) == 0

    async def test_markup_characters_are_plain_text(
        self, imaging: VipsImaging, chelsea: bytes
    ) -> None:
        *_, height = await self.changed_region(imaging, chelsea, {"text": "<b>Tom & Jerry</b>"})
        assert height > 0


class TestCrop:
    async def test_offset(self, imaging: VipsImaging, chelsea: bytes, chelsea_pixels: Any) -> None:
        image = await render_one(
            imaging, chelsea, {"action": "crop", "width": 100, "height": 50, "x": 30, "y": 40}
        )
        assert (image.width, image.height) == (100, 50)
        assert image.getpoint(0, 0) == chelsea_pixels.getpoint(30, 40)
        assert image.getpoint(99, 49) == chelsea_pixels.getpoint(129, 89)

    @pytest.mark.parametrize(
        ("gravity", "origin"),
        [(None, (175, 125)), ("center", (175, 125)), ("northwest", (0, 0)), ("east", (351, 125))],
    )
    async def test_gravity(
        self,
        imaging: VipsImaging,
        chelsea: bytes,
        chelsea_pixels: Any,
        gravity: str | None,
        origin: tuple[int, int],
    ) -> None:
        step: dict[str, Any] = {"action": "crop", "width": 100, "height": 50}
        if gravity:
            step["gravity"] = gravity
        image = await render_one(imaging, chelsea, step)
        assert (image.width, image.height) == (100, 50)
        assert mean_difference(image, chelsea_pixels.crop(*origin, 100, 50)) == 0

    async def test_smart(self, imaging: VipsImaging, fixtures_dir: Path) -> None:
        image = await render_one(
            imaging,
            read(fixtures_dir, "rocket.jpg"),
            {"action": "crop", "width": 200, "height": 300, "gravity": "smart"},
            fmt="webp",
        )
        assert (image.width, image.height) == (200, 300)

    @pytest.mark.parametrize("gravity", ["center", "smart"])
    async def test_a_box_larger_than_the_image_is_clamped(
        self, imaging: VipsImaging, chelsea: bytes, gravity: str
    ) -> None:
        image = await render_one(
            imaging, chelsea, {"action": "crop", "width": 1000, "height": 200, "gravity": gravity}
        )
        assert (image.width, image.height) == (451, 200)

    @pytest.mark.parametrize(("x", "width"), [(451, 10), (442, 10), (0, 452)])
    async def test_an_offset_region_reaching_outside_the_image_is_refused(
        self, imaging: VipsImaging, chelsea: bytes, x: int, width: int
    ) -> None:
        with pytest.raises(ImageRejected) as caught:
            await render_one(
                imaging, chelsea, {"action": "crop", "width": width, "height": 10, "x": x, "y": 0}
            )
        assert caught.value.code == "crop_out_of_bounds"
        assert "451×300" in caught.value.message

    async def test_an_offset_region_up_to_the_far_corner_is_cut_exactly(
        self, imaging: VipsImaging, chelsea: bytes, chelsea_pixels: Any
    ) -> None:
        step = {"action": "crop", "width": 51, "height": 20, "x": 400, "y": 280}
        image = await render_one(imaging, chelsea, step)
        assert mean_difference(image, chelsea_pixels.crop(400, 280, 51, 20)) == 0


class TestRotateAndFlip:
    @pytest.mark.parametrize(
        ("angle", "size", "corner"),
        # Clockwise: the pixel that lands in the top-left corner comes from...
        [(90, (300, 451), (0, 299)), (180, (451, 300), (450, 299)), (270, (300, 451), (450, 0))],
    )
    async def test_rotate(
        self,
        imaging: VipsImaging,
        chelsea: bytes,
        chelsea_pixels: Any,
        angle: int,
        size: tuple[int, int],
        corner: tuple[int, int],
    ) -> None:
        image = await render_one(imaging, chelsea, {"action": "rotate", "angle": angle})
        assert (image.width, image.height) == size
        assert image.getpoint(0, 0) == chelsea_pixels.getpoint(*corner)

    @pytest.mark.parametrize(
        ("direction", "corner"), [("horizontal", (450, 0)), ("vertical", (0, 299))]
    )
    async def test_flip(
        self,
        imaging: VipsImaging,
        chelsea: bytes,
        chelsea_pixels: Any,
        direction: str,
        corner: tuple[int, int],
    ) -> None:
        image = await render_one(imaging, chelsea, {"action": "flip", "direction": direction})
        assert (image.width, image.height) == CHELSEA
        assert image.getpoint(0, 0) == chelsea_pixels.getpoint(*corner)


class TestBlurAndSharpen:
    async def test_blur_smooths(
        self, imaging: VipsImaging, chelsea: bytes, chelsea_pixels: Any
    ) -> None:
        image = await render_one(imaging, chelsea, {"action": "blur", "sigma": 3})
        assert (image.width, image.height, image.bands) == (*CHELSEA, 3)
        assert _edges(image) < _edges(chelsea_pixels) / 2

    async def test_more_sigma_blurs_more(self, imaging: VipsImaging, chelsea: bytes) -> None:
        light = await render_one(imaging, chelsea, {"action": "blur", "sigma": 0.5})
        heavy = await render_one(imaging, chelsea, {"action": "blur", "sigma": 8})
        assert _edges(heavy) < _edges(light)

    async def test_sharpen_adds_edge_contrast(
        self, imaging: VipsImaging, chelsea: bytes, chelsea_pixels: Any
    ) -> None:
        image = await render_one(imaging, chelsea, {"action": "sharpen", "sigma": 1})
        assert (image.width, image.height, image.bands) == (*CHELSEA, 3)
        assert _edges(image) > _edges(chelsea_pixels)

    async def test_blur_keeps_alpha(self, imaging: VipsImaging, fixtures_dir: Path) -> None:
        logo = read(fixtures_dir, "logo-alpha.png")
        image = await render_one(imaging, logo, {"action": "blur", "sigma": 2})
        assert image.bands == 4


def _edges(image: Any) -> float:
    """Mean gradient magnitude: high for sharp images, low for blurred ones."""
    grey = image.colourspace("b-w")[0].cast("float")
    return float(grey.sobel().avg())
