"""The console's view helpers: the pipeline as a tree, the usage chart, sizes and months."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest

from pixelflow.console import views
from pixelflow.core.errors import InvalidInput
from pixelflow.core.models import Step


def steps(*raw: dict[str, object]) -> list[Step]:
    return msgspec.convert(list(raw), list[Step])


def test_chained_steps_hang_under_their_input() -> None:
    tree = views.pipeline_tree(
        steps(
            {"id": "big", "action": "resize", "width": 800},
            {"id": "mark", "action": "watermark", "watermark": {"text": "x"}},
            {"id": "small", "action": "resize", "width": 100, "input": "big", "format": "webp"},
            {"id": "tiny", "action": "convert", "input": "small", "format": "png"},
        )
    )
    assert [node.step.id for node in tree] == ["big", "mark"]
    assert [node.step.id for node in tree[0].children] == ["small"]
    assert [node.step.id for node in tree[0].children[0].children] == ["tiny"]
    assert tree[0].children[0].summary == "resize 100×auto (inside) → webp"
    assert tree[1].summary == "watermark “x” southeast"


def test_previews_fit_the_box_and_are_never_enlarged() -> None:
    assert views.preview_size(4000, 3000) == (320, 240)
    assert views.preview_size(300, 1200) == (80, 320)
    assert views.preview_size(100, 50) == (100, 50)


def test_the_usage_chart_scales_to_the_largest_day() -> None:
    days = [(date(2026, 11, 1), 0), (date(2026, 11, 2), 5), (date(2026, 11, 3), 10)]
    chart = views.usage_chart(days, str)
    heights = [bar.height for bar in chart.bars]
    assert heights[0] == 0 and heights[2] == 2 * heights[1] > 0
    assert chart.bars[2].y + chart.bars[2].height == chart.axis_y
    assert chart.top_label == "10" and chart.bars[1].label == "2026-11-02: 5"
    assert views.usage_chart([(date(2026, 11, 1), 0)], str).bars[0].height == 0  # no division by 0


def test_months_and_sizes_read_as_people_write_them() -> None:
    assert views.parse_month("2026-02") == date(2026, 2, 1)
    for bad in ("2026-13", "soon", "2026"):
        with pytest.raises(InvalidInput):
            views.parse_month(bad)
    assert views.human_bytes(512) == "512 bytes"
    assert views.human_bytes(3 * 1024 * 1024) == "3.0 MiB"
    assert views.human_count(3_000_000) == "3.0 M"
    assert views.human_duration(75.0) == "75 s"
