"""Crop boxes, gravity placement and watermark proportions, without images."""

from __future__ import annotations

import pytest

from pixelflow.adapters.imaging.geometry import (
    MIN_TEXT_HEIGHT,
    Box,
    crop_box,
    place,
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

    def test_an_offset_region_is_clamped_at_the_far_edges(self) -> None:
        assert crop_box((640, 427), (400, 400), x=600, y=400) == Box(600, 400, 40, 27)

    @pytest.mark.parametrize(("x", "y"), [(640, 0), (0, 427), (5000, 5000)])
    def test_an_offset_outside_the_image_is_refused(self, x: int, y: int) -> None:
        with pytest.raises(ImageRejected) as caught:
            crop_box((640, 427), (10, 10), x=x, y=y)
        assert caught.value.code == "crop_out_of_bounds"


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
