"""What the templates show, computed from the domain objects: no I/O here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import msgspec

from pixelflow.core.errors import InvalidInput
from pixelflow.core.models import (
    BlurStep,
    ConvertStep,
    CropStep,
    FlipStep,
    Job,
    ResizeStep,
    RotateStep,
    SharpenStep,
    Step,
    WatermarkStep,
)
from pixelflow.core.states import TERMINAL, JobStatus

# Previews are the outputs themselves, drawn at most this large by the browser.
PREVIEW_BOX = 320


@dataclass
class StepNode:
    """One step of a job's pipeline and the steps chained onto its result."""

    step: Step
    summary: str
    children: list[StepNode] = field(default_factory=list)


def pipeline_tree(steps: list[Step]) -> list[StepNode]:
    """The steps as a forest: a root reads the source, a child reads its parent's result."""
    nodes = {step.id: StepNode(step, step_summary(step)) for step in steps}
    roots: list[StepNode] = []
    for step in steps:
        parent = nodes.get(step.input) if step.input is not None else None
        (parent.children if parent is not None else roots).append(nodes[step.id])
    return roots


def step_summary(step: Step) -> str:
    """A step in a few words: ``resize 800×auto (inside)``, ``→ webp q80``."""
    detail = _detail(step)
    out = ""
    if step.format is not None:
        out = f" → {step.format}" + (f" q{step.quality}" if step.quality is not None else "")
    hidden = " (not emitted)" if not step.emit else ""
    return f"{action_of(step)}{' ' + detail if detail else ''}{out}{hidden}"


def action_of(step: Step) -> str:
    return str(step.__struct_config__.tag)


def _detail(step: Step) -> str:
    if isinstance(step, ResizeStep):
        return f"{step.width or 'auto'}×{step.height or 'auto'} ({step.fit})"
    if isinstance(step, CropStep):
        where = step.gravity or (f"at {step.x or 0},{step.y or 0}" if step.x or step.y else "")
        return f"{step.width}×{step.height}{' ' + where if where else ''}"
    if isinstance(step, WatermarkStep):
        return f"“{step.watermark.text}” {step.watermark.gravity}"
    if isinstance(step, RotateStep):
        return f"{step.angle}°"
    if isinstance(step, FlipStep):
        return step.direction
    if isinstance(step, BlurStep | SharpenStep):
        return f"σ {step.sigma:g}"
    assert isinstance(step, ConvertStep)
    return ""


def is_running(job: Job) -> bool:
    return job.status not in TERMINAL


def duration_seconds(job: Job, now: datetime) -> float | None:
    """Processing time: from the first claim to the end (or to now while it runs)."""
    if job.started_at is None:
        return None
    end = job.finished_at or (now if job.status is JobStatus.PROCESSING else None)
    return None if end is None else max(0.0, (end - job.started_at).total_seconds())


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


def human_bytes(count: int | None) -> str:
    if count is None:
        return "—"
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_count(count: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return str(count)


def human_time(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def preview_size(width: int, height: int, box: int = PREVIEW_BOX) -> tuple[int, int]:
    """The size to draw an output at, fitted inside ``box`` (never enlarged)."""
    scale = min(1.0, box / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


# The presets of /console/new: pipelines a newcomer can start from, then edit.
PRESETS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "thumbnail": (
        "Thumbnail (320×320 WebP, cropped to fill)",
        [
            {
                "id": "thumb",
                "action": "resize",
                "width": 320,
                "height": 320,
                "fit": "cover",
                "format": "webp",
            }
        ],
    ),
    "responsive": (
        "Responsive set (1600, 800 and 320 px wide, and a WebP)",
        [
            {"id": "w1600", "action": "resize", "width": 1600, "upscale": False, "format": "jpeg"},
            {"id": "w800", "action": "resize", "width": 800, "input": "w1600"},
            {"id": "w320", "action": "resize", "width": 320, "input": "w800"},
            {"id": "w800-webp", "action": "convert", "input": "w800", "format": "webp"},
        ],
    ),
    "watermark": (
        "Watermark (text in the corner, then a 1200 px copy)",
        [
            {"id": "marked", "action": "watermark", "watermark": {"text": "© PixelFlow"}},
            {
                "id": "marked-1200",
                "action": "resize",
                "width": 1200,
                "input": "marked",
                "format": "jpeg",
            },
        ],
    ),
}


def preset_json(name: str) -> str:
    return msgspec.json.format(msgspec.json.encode(PRESETS[name][1]), indent=2).decode()


# -- the usage chart ------------------------------------------------------------------------------

# What the usage chart can show, per day: the field of a usage row and its label.
USAGE_METRICS: dict[str, str] = {
    "jobs": "Jobs",
    "pixels_processed": "Pixels processed",
    "bytes_saved": "Bytes saved",
    "compute_time_ms": "Compute time (ms)",
}
CHART_WIDTH, CHART_HEIGHT, CHART_LEFT, CHART_BOTTOM, CHART_TOP = 720, 220, 56, 24, 12


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the day and its value, for the bar's tooltip and screen readers


@dataclass
class Tick:
    x: float
    y: float
    label: str


@dataclass
class Chart:
    """An inline-SVG bar chart: one bar per day, scaled to the largest value."""

    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]  # a few dates along the bottom
    top_label: str  # the largest value, at the top of the axis
    axis_x: int
    axis_y: int


def usage_chart(days: list[tuple[date, int]], describe: Callable[[int], str]) -> Chart:
    plot_width = CHART_WIDTH - CHART_LEFT
    plot_height = CHART_HEIGHT - CHART_BOTTOM - CHART_TOP
    top = max((value for _, value in days), default=0)
    slot = plot_width / max(len(days), 1)
    bars, ticks = [], []
    every = max(1, len(days) // 6)
    for index, (day, value) in enumerate(days):
        height = plot_height * value / top if top else 0.0
        x = CHART_LEFT + index * slot
        bars.append(
            Bar(
                x=round(x + slot * 0.15, 2),
                y=round(CHART_TOP + plot_height - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
                label=f"{day.isoformat()}: {describe(value)}",
            )
        )
        if index % every == 0:
            ticks.append(Tick(x=round(x, 2), y=CHART_HEIGHT - 6, label=day.strftime("%b %d")))
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        bars=bars,
        ticks=ticks,
        top_label=describe(top),
        axis_x=CHART_LEFT,
        axis_y=CHART_TOP + plot_height,
    )


def parse_month(text: str) -> date:
    """``YYYY-MM`` (an ``<input type="month">``'s value) → its first day."""
    try:
        year, month = (int(part) for part in text.split("-"))
        return date(year, month, 1)
    except ValueError:
        raise InvalidInput(
            f"month must be YYYY-MM; got {text[:32]!r}", code="invalid_parameter"
        ) from None


def describe_metric(metric: str) -> Callable[[int], str]:
    """How a value of the usage chart's metric reads."""
    if metric == "pixels_processed":
        return human_count
    if metric == "bytes_saved":
        return human_bytes
    if metric == "compute_time_ms":
        return lambda value: human_duration(value / 1000)
    return str
