"""The create-time cost estimate (pure arithmetic over the step models)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pixelflow.core.cost import check_cost, estimate
from pixelflow.core.errors import InvalidInput
from pixelflow.core.models import Step
from tests.support.jobs import DONE_WHEN_PIPELINE

MAX_PIXELS = 100_000_000
TIMEOUT = 180.0


def steps(*raw: dict[str, Any]) -> list[Step]:
    return msgspec.convert(list(raw), type=list[Step])


def test_the_enlarge_then_blur_attack_is_refused_naming_the_step() -> None:
    pipeline = steps(
        {"id": "big", "action": "resize", "width": 6000, "height": 6000, "fit": "fill"},
        {"id": "b1", "action": "blur", "sigma": 100, "input": "big"},
        {"id": "b2", "action": "blur", "sigma": 100, "input": "b1"},
        {"id": "b3", "action": "blur", "sigma": 100, "input": "b2"},
    )
    with pytest.raises(InvalidInput) as caught:
        check_cost(pipeline, max_pixels=MAX_PIXELS, budget_seconds=TIMEOUT)
    assert caught.value.code == "pipeline_too_costly"
    # One σ=100 blur of 36 MP is already ~5 minutes: the first blur crosses the budget.
    assert caught.value.message.startswith("pipeline[1] (blur)")
    details = caught.value.details
    assert details is not None and details["step"] == 1 and details["estimated_seconds"] > TIMEOUT


@pytest.mark.parametrize(
    "pipeline",
    [
        pytest.param(DONE_WHEN_PIPELINE, id="readme-example"),
        pytest.param(
            [
                {"id": "xl", "action": "resize", "width": 1600, "format": "jpeg"},
                {"id": "m", "action": "resize", "width": 800, "input": "xl", "format": "jpeg"},
                {"id": "s", "action": "resize", "width": 320, "input": "m", "format": "jpeg"},
                {"id": "w", "action": "resize", "width": 800, "input": "xl", "format": "webp"},
            ],
            id="responsive-set",
        ),
        pytest.param(
            [
                {"id": "t", "action": "resize", "width": 1600, "height": 1600},
                {"id": "b", "action": "blur", "sigma": 20, "input": "t", "format": "webp"},
                {"id": "s", "action": "sharpen", "sigma": 2, "input": "t", "format": "png"},
            ],
            id="resize-then-effects",
        ),
        pytest.param([{"id": "c", "action": "convert", "format": "webp"}], id="convert"),
        pytest.param(
            [{"id": "w", "action": "watermark", "watermark": {"text": "© me"}}], id="watermark"
        ),
    ],
)
def test_ordinary_pipelines_are_accepted(pipeline: list[dict[str, Any]]) -> None:
    total = check_cost(steps(*pipeline), max_pixels=MAX_PIXELS, budget_seconds=TIMEOUT)
    assert 0 < total <= TIMEOUT


def test_sizes_follow_boxes_chains_and_rotations() -> None:
    costs = estimate(
        steps(
            {"id": "w", "action": "resize", "width": 2000},
            {"id": "half", "action": "resize", "width": 1000, "input": "w"},
            {"id": "crop", "action": "crop", "width": 300, "height": 200},
            {"id": "rot", "action": "rotate", "angle": 90, "input": "crop"},
            {"id": "box", "action": "resize", "width": 100, "input": "rot"},
            {"id": "small", "action": "resize", "width": 10, "height": 10, "upscale": False},
        ),
        max_pixels=MAX_PIXELS,
    )
    # One side only: the other is assumed at most 16384 px; a chain on the same side scales by
    # the square of the ratio; a rotation swaps the sides a crop fixed.
    assert [c.pixels for c in costs] == [
        2000 * 16384,
        1000 * 16384 // 2,
        60_000,
        60_000,
        15_000,
        100,
    ]


def test_blur_cost_grows_with_sigma_and_the_budget_scales_with_the_limits() -> None:
    def blur(sigma: float) -> list[Step]:
        return steps({"id": "b", "action": "blur", "sigma": sigma})

    costs = [estimate(blur(sigma), max_pixels=MAX_PIXELS)[0].seconds for sigma in (1, 10, 100)]
    assert costs == sorted(costs) and costs[2] > 20 * costs[0]
    # Refused at the default limits, accepted when sources are capped at 1 MP.
    with pytest.raises(InvalidInput):
        check_cost(blur(100), max_pixels=MAX_PIXELS, budget_seconds=TIMEOUT)
    assert check_cost(blur(100), max_pixels=1_000_000, budget_seconds=TIMEOUT) < 10
