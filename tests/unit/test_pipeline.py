"""Pipeline planning: parents, formats, quality, and the shrink-on-load arithmetic."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pixelflow.core.errors import InvalidInput
from pixelflow.core.models import ResizeStep, Step
from pixelflow.core.pipeline import (
    DEFAULT_QUALITY,
    cascade,
    decode_shrink,
    jpeg_shrink,
    plan_pipeline,
    resize_reduction,
)


def steps(*raw: dict[str, Any]) -> list[Step]:
    return msgspec.convert(list(raw), type=list[Step])


def resize(**fields: Any) -> ResizeStep:
    return msgspec.convert({"id": "r", "action": "resize", **fields}, type=ResizeStep)


class TestPlan:
    def test_parents_default_to_the_source_and_follow_input(self) -> None:
        plan = plan_pipeline(
            steps(
                {"id": "a", "action": "resize", "width": 800},
                {"id": "b", "action": "rotate", "angle": 90, "input": "a"},
                {"id": "c", "action": "convert", "format": "png"},
            ),
            source_format="jpeg",
        )
        assert [(p.id, p.parent) for p in plan.steps] == [("a", None), ("b", "a"), ("c", None)]
        assert [p.id for p in plan.consumers(None)] == ["a", "c"]
        assert [p.id for p in plan.consumers("a")] == ["b"]
        assert plan.consumers("b") == ()

    def test_format_is_normalised_and_defaults_to_the_source_format(self) -> None:
        plan = plan_pipeline(
            steps(
                {"id": "a", "action": "convert", "format": "jpg"},
                {"id": "b", "action": "convert"},
                {"id": "c", "action": "convert", "input": "a"},
                {"id": "d", "action": "convert", "format": "avif"},
            ),
            source_format="webp",
        )
        assert [p.format for p in plan.steps] == ["jpeg", "webp", "webp", "avif"]

    def test_quality_defaults_to_80(self) -> None:
        plan = plan_pipeline(
            steps(
                {"id": "a", "action": "convert"},
                {"id": "b", "action": "convert", "quality": 35},
            ),
            source_format="jpeg",
        )
        assert DEFAULT_QUALITY == 80
        assert [p.quality for p in plan.steps] == [80, 35]

    def test_action_and_emit_come_from_the_step(self) -> None:
        plan = plan_pipeline(
            steps(
                {"id": "a", "action": "blur", "sigma": 2, "emit": False},
                {"id": "b", "action": "flip", "direction": "vertical", "input": "a"},
            ),
            source_format="png",
        )
        assert [(p.action, p.emit) for p in plan.steps] == [("blur", False), ("flip", True)]

    def test_a_repeated_transform_of_the_same_pixels_is_marked_as_the_first(self) -> None:
        plan = plan_pipeline(
            steps(
                {"id": "jpg", "action": "resize", "width": 800, "format": "jpeg"},
                # Only how the result is written differs: the same pixels.
                {"id": "webp", "action": "resize", "width": 800, "format": "webp", "quality": 70},
                {"id": "raw", "action": "resize", "width": 800, "strip": False, "emit": False},
                {"id": "small", "action": "resize", "width": 320},
                {"id": "cover", "action": "resize", "width": 800, "fit": "cover"},
            ),
            source_format="jpeg",
        )
        assert [p.same_as for p in plan.steps] == [None, "jpg", "jpg", None, None]

    def test_repeats_are_found_through_chains_of_repeats(self) -> None:
        plan = plan_pipeline(
            steps(
                {"id": "a", "action": "resize", "width": 800},
                {"id": "b", "action": "resize", "width": 800, "format": "webp"},
                {"id": "a-marked", "action": "blur", "sigma": 1, "input": "a"},
                # Reads b, whose pixels are a's: the same blur of the same pixels.
                {"id": "b-marked", "action": "blur", "sigma": 1, "input": "b"},
                {"id": "b-sharper", "action": "blur", "sigma": 2, "input": "b"},
                # The same blur of the source's pixels is another transform.
                {"id": "source-marked", "action": "blur", "sigma": 1},
            ),
            source_format="jpeg",
        )
        assert [p.same_as for p in plan.steps] == [None, "a", None, "a-marked", None, None]

    @pytest.mark.parametrize("target", ["later", "missing"])
    def test_input_must_name_an_earlier_step(self, target: str) -> None:
        pipeline = steps(
            {"id": "a", "action": "convert", "input": target},
            {"id": "later", "action": "convert"},
        )
        with pytest.raises(InvalidInput) as caught:
            plan_pipeline(pipeline, source_format="jpeg")
        assert caught.value.code == "invalid_input_step"
        assert "pipeline[0].input" in caught.value.message


class TestResizeReduction:
    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({"width": 800}, 5.0),
            ({"height": 600}, 5.0),
            ({"width": 800, "height": 300}, 10.0),  # inside: the tighter side decides
            ({"width": 800, "height": 300, "fit": "contain"}, 10.0),
            ({"width": 800, "height": 300, "fit": "cover"}, 5.0),  # cover: the looser side
            ({"width": 800, "height": 300, "fit": "fill"}, 5.0),
            ({"width": 8000}, 0.5),  # an enlargement
        ],
    )
    def test_reduction_of_a_4000x3000_image(self, fields: dict[str, Any], expected: float) -> None:
        assert resize_reduction(resize(**fields), 4000, 3000) == pytest.approx(expected)


class TestDecodeShrink:
    def test_resizes_to_800_from_4000_keep_twice_the_target(self) -> None:
        consumers = [resize(width=800), resize(width=320)]
        assert decode_shrink(consumers, 4000, 3000) == pytest.approx(2.5)
        assert jpeg_shrink(decode_shrink(consumers, 4000, 3000)) == 2

    def test_without_headroom_the_decode_may_just_cover_the_largest_output(self) -> None:
        consumers = [resize(width=800), resize(width=320)]
        assert jpeg_shrink(decode_shrink(consumers, 4000, 3000, headroom=1)) == 4

    def test_the_largest_consumer_decides(self) -> None:
        consumers = [resize(width=320), resize(width=1600), resize(width=800)]
        assert decode_shrink(consumers, 4000, 3000, headroom=1) == pytest.approx(2.5)

    @pytest.mark.parametrize(
        "other",
        [
            {"action": "crop", "width": 100, "height": 100, "x": 10, "y": 10},
            {"action": "crop", "width": 100, "height": 100, "gravity": "smart"},
            {"action": "rotate", "angle": 90},
            {"action": "blur", "sigma": 2},
            {"action": "sharpen", "sigma": 1},
            {"action": "flip", "direction": "horizontal"},
            {"action": "watermark", "watermark": {"text": "x"}},
            {"action": "convert"},
        ],
    )
    def test_any_full_resolution_consumer_forces_1(self, other: dict[str, Any]) -> None:
        consumers = [resize(width=100), msgspec.convert({"id": "o", **other}, type=Step)]
        assert decode_shrink(consumers, 4000, 3000) == 1.0

    def test_an_enlargement_forces_1(self) -> None:
        assert decode_shrink([resize(width=100), resize(width=5000)], 4000, 3000) == 1.0

    def test_no_consumers_means_no_shrink(self) -> None:
        assert decode_shrink([], 4000, 3000) == 1.0

    def test_orientation_is_the_callers_business(self) -> None:
        # Planning works on the upright size: a 3000×4000 portrait resized to 800 wide.
        assert decode_shrink([resize(width=800)], 3000, 4000, headroom=1) == pytest.approx(3.75)


def cascaded(*raw: dict[str, Any], size: tuple[int, int] = (4000, 3000)) -> dict[str, str | None]:
    """step id → what ``cascade`` has it read, for resizes given as (id, fields)."""
    plan = cascade(plan_pipeline(steps(*raw), source_format="jpeg"), *size)
    return {planned.id: planned.reads for planned in plan.steps}


def sized(step_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "action": "resize", **fields}


class TestCascade:
    def test_a_responsive_set_resamples_each_size_from_the_next_larger(self) -> None:
        reads = cascaded(
            sized("big", width=1600),
            sized("mid", width=800),
            sized("mid-webp", width=800, format="webp"),
            sized("small", width=320),
        )
        # 800 is half of 1600; 320 is 2.5 times smaller than 800; the WebP repeats 800.
        assert reads == {"big": None, "mid": "big", "mid-webp": "mid", "small": "mid"}

    def test_the_smallest_result_at_least_twice_the_size_is_taken(self) -> None:
        reads = cascaded(
            sized("a", width=3000), sized("b", width=1000), sized("c", width=700),
            sized("d", width=400),
        )  # fmt: skip
        # b (1000) is 3× smaller than a; c (700) is 4.3× smaller than a but only 1.4× than b;
        # d (400) could read a (7.5×) or b (2.5×), and takes b, the smaller.
        assert reads == {"a": None, "b": "a", "c": "a", "d": "b"}

    def test_less_than_twice_the_size_reads_the_source(self) -> None:
        assert cascaded(sized("a", width=1000), sized("b", width=600)) == {"a": None, "b": None}

    def test_only_earlier_steps_are_read(self) -> None:
        assert cascaded(sized("small", width=320), sized("big", width=1600)) == {
            "small": None,
            "big": None,
        }

    def test_an_enlargement_is_never_read(self) -> None:
        reads = cascaded(sized("up", width=8000), sized("down", width=800))
        assert reads == {"up": None, "down": None}

    @pytest.mark.parametrize("fit", ["cover", "contain", "fill"])
    def test_only_uniform_scales_of_the_whole_image_take_part(self, fit: str) -> None:
        box = {"width": 1600, "height": 900}
        assert cascaded(sized("a", **box, fit=fit), sized("b", width=320)) == {"a": None, "b": None}
        small = {"width": 320, "height": 180, "fit": fit}
        assert cascaded(sized("a", width=1600), sized("b", **small)) == {"a": None, "b": None}

    def test_chained_steps_keep_their_input(self) -> None:
        reads = cascaded(
            sized("big", width=1600),
            {"id": "turned", "action": "rotate", "angle": 90},
            sized("small", width=320, input="turned"),
        )
        assert reads == {"big": None, "turned": None, "small": "turned"}

    def test_sizes_are_judged_on_the_source_it_is_given(self) -> None:
        boxes = (sized("a", width=800), sized("b", height=300))
        # 4000×3000: 800×600, then 400×300, half of it.
        assert cascaded(*boxes) == {"a": None, "b": "a"}
        # 4000×1000: 800×200, then 1200×300, larger than it.
        assert cascaded(*boxes, size=(4000, 1000)) == {"a": None, "b": None}


@pytest.mark.parametrize(
    ("factor", "shrink"),
    [(1.0, 1), (1.99, 1), (2.0, 2), (3.9, 2), (4.0, 4), (7.5, 4), (8.0, 8), (100.0, 8)],
)
def test_jpeg_shrink_is_the_largest_power_of_two_not_above_the_factor(
    factor: float, shrink: int
) -> None:
    assert jpeg_shrink(factor) == shrink
