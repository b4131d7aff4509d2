"""Crop boxes, gravity placement and watermark proportions, without images."""

from __future__ import annotations

import pytest

from pixelflow.adapters.imaging.geometry import (
    MIN_TEXT_HEIGHT,
    Box,
    crop_box,
    largest_within,
    place,
    smallest_holding,
    watermark_metrics,
)
from pixelflow.adapters.imaging.watermark import parse_color
from pixelflow.core.errors import ImageRejected
from pixelflow.core.models import Gravity


@pytest.mark.parametrize(
    ("gravity", "corner"),
    [
        ("northwest", (5, 5)),
        ("north", (40, 5)),
        ("northeast", (75, 5)),
        ("west", (5, 20)),
        ("center", (40, 20)),
        ("east", (75, 20)),
        ("southwest", (5, 35)),
        ("south", (40, 35)),
        ("southeast", (75, 35)),
    ],
)
def test_place_by_gravity(gravity: Gravity, corner: tuple[int, int]) -> None:
    assert place(gravity, (100, 50), (20, 10), margin=5) == corner


class TestCropBox:
    def test_centred_by_default(self) -> None:
        assert crop_box((640, 427), (200, 100)) == Box(220, 163, 200, 100)

    def test_gravity(self) -> None:
        assert crop_box((640, 427), (200, 100), gravity="southeast") == Box(440, 327, 200, 100)

    def test_a_box_larger_than_the_image_is_clamped(self) -> None:
        assert crop_box((640, 427), (1000, 1000), gravity="north") == Box(0, 0, 640, 427)

    def test_offset(self) -> None:
        assert crop_box((640, 427), (100, 50), x=10, y=20) == Box(10, 20, 100, 50)

    def test_a_missing_offset_counts_as_zero(self) -> None:
        assert crop_box((640, 427), (100, 50), x=10) == Box(10, 0, 100, 50)

    def test_an_offset_region_may_touch_the_far_edges(self) -> None:
        assert crop_box((640, 427), (40, 27), x=600, y=400) == Box(600, 400, 40, 27)

    @pytest.mark.parametrize(
        ("x", "y", "size"),
        [
            (640, 0, (10, 10)),  # entirely outside
            (0, 427, (10, 10)),
            (5000, 5000, (10, 10)),
            (600, 400, (41, 27)),  # one pixel past the right edge
            (600, 400, (40, 28)),  # one pixel past the bottom edge
            (0, None, (641, 10)),  # wider than the image
        ],
    )
    def test_an_offset_region_reaching_outside_the_image_is_refused(
        self, x: int, y: int | None, size: tuple[int, int]
    ) -> None:
        with pytest.raises(ImageRejected) as caught:
            crop_box((640, 427), size, x=x, y=y)
        assert caught.value.code == "crop_out_of_bounds"
        assert "640×427" in caught.value.message


class TestWithoutEnlarging:
    @pytest.mark.parametrize(
        ("image", "box", "cut"),
        [
            ((451, 300), (1000, 1000), (300, 300)),  # the box's aspect at the source's scale
            ((451, 300), (900, 200), (451, 100)),
            ((451, 300), (200, 900), (67, 300)),
            ((1000, 100), (500, 500), (100, 100)),
            ((451, 300), (451, 300), (451, 300)),  # the image fills the box: nothing to cut
            ((4000, 3000), (800, 600), (800, 600)),  # a box inside the image is kept
        ],
    )
    def test_largest_within(
        self, image: tuple[int, int], box: tuple[int, int], cut: tuple[int, int]
    ) -> None:
        assert largest_within(image, box) == cut

    @pytest.mark.parametrize(
        ("inner", "box", "canvas"),
        [
            ((451, 300), (900, 400), (675, 300)),  # pads to the box's aspect, not its size
            ((451, 300), (600, 1200), (451, 902)),
            ((451, 300), (902, 600), (451, 300)),  # same aspect: no padding at all
            ((300, 133), (300, 300), (300, 300)),  # touches the box: the box itself
            ((1, 1), (16384, 1), (16384, 1)),  # an extreme aspect ratio: still bounded by the box
        ],
    )
    def test_smallest_holding(
        self, inner: tuple[int, int], box: tuple[int, int], canvas: tuple[int, int]
    ) -> None:
        assert smallest_holding(inner, box) == canvas


class TestWatermarkMetrics:
    def test_default_size_scales_with_the_shorter_side(self) -> None:
        small = watermark_metrics((800, 600), None)
        large = watermark_metrics((4000, 3000), None)
        assert large == (small[0] * 5, small[1] * 5)

    def test_size_is_a_fraction_of_the_shorter_side(self) -> None:
        assert watermark_metrics((4000, 3000), 0.1)[0] == 300
        assert watermark_metrics((3000, 4000), 0.1)[0] == 300

    def test_text_never_shrinks_below_legible(self) -> None:
        assert watermark_metrics((14, 25), 0.1)[0] == MIN_TEXT_HEIGHT


@pytest.mark.parametrize(
    ("color", "rgb"),
    [("#fff", [255, 255, 255]), ("#0a0", [0, 170, 0]), ("#1e90FF", [30, 144, 255])],
)
def test_parse_color(color: str, rgb: list[int]) -> None:
    assert parse_color(color) == rgb
