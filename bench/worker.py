"""Benchmark: worker throughput through the real path, against hand-written loops and thumbor.

    .venv/bin/python bench/worker.py [--backend embedded --backend production ...]
        [--jobs 30] [--rounds 7] [--images DIR] [--json PATH]

The work: photo-12mp.jpg → 800 px wide + a text watermark → JPEG q80. Each round gives every
backend the same N images, one after another in a rotating order:

- embedded:   `pixelflow serve` (API and worker in one process, SQLite, files)
- production: `pixelflow api` + one `pixelflow worker` (PostgreSQL, Redis, SeaweedFS)
- vips loop:  raw pyvips, thumbnail + watermark, one image per thread, 2 threads
- pillow loop: Pillow with draft() (1/4-scale JPEG decode), same work, 2 threads
- thumbor:    thumbor 7.8 (PIL engine), 2 processes, the watermark filter with the same text

Printed: images/s, p50/p95 latency (created → succeeded for PixelFlow; from the round's start
for the others), CPU-seconds per image of the process doing the work, its peak RSS; and the
ratios the issue's table asks for. Not a pass/fail test.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
import pyvips
from backends import (
    LoopBackend,
    PixelflowBackend,
    ThumborBackend,
    embedded,
    production,
    thumbor,
    worker_pid,
)
from loops import OPACITY, QUALITY, TEXT, WIDTH

PIPELINE: list[dict[str, Any]] = [
    {"id": "small", "action": "resize", "width": WIDTH, "emit": False},
    {
        "id": "marked",
        "action": "watermark",
        "input": "small",
        "watermark": {"text": TEXT, "opacity": OPACITY},
        "format": "jpeg",
        "quality": QUALITY,
    },
]
BACKENDS = ("embedded", "production", "vips", "pillow", "thumbor")


def watermark_png() -> bytes:
    """thumbor's watermark filter takes an image: the same text, drawn once, white on alpha,
    the height PixelFlow gives it on an 800×600 output (5% of the shorter side)."""
    mask = pyvips.Image.text(TEXT, font="DejaVu Sans Bold", height=30, width=WIDTH)
    ink = mask.new_from_image([255, 255, 255]).copy(interpretation="srgb")
    data: bytes = ink.bandjoin(mask).pngsave_buffer()
    return data


# The watermark sits 15 px (2.5% of 600) from the bottom-right corner, at PixelFlow's opacity.
THUMBOR_PATH = (
    f"/unsafe/{WIDTH}x0/filters:quality({QUALITY})"
    f":watermark(mark.png,-15,-15,{round(100 * (1 - OPACITY))})/{{image}}"
)


async def measure(
    stack: contextlib.ExitStack, chosen: list[str], images: Path, workdir: Path, args: Any
) -> dict[str, Any]:
    runners: dict[str, Callable[[], Any]] = {}
    closers = []
    for name in chosen:
        backend: Any
        if name == "embedded":
            url, pid = stack.enter_context(embedded(workdir, images, {}))
            backend = PixelflowBackend("embedded (serve)", url, pid, PIPELINE)
        elif name == "production":
            deployment = stack.enter_context(production(workdir, images, {}))
            backend = PixelflowBackend(
                "production (api+worker)", deployment.url, worker_pid(deployment), PIPELINE
            )
        elif name in ("vips", "pillow"):
            backend = LoopBackend(name, "watermark", images)
        else:
            try:
                url, pid = stack.enter_context(
                    thumbor(workdir, images, {"mark.png": watermark_png()})
                )
            except RuntimeError as exc:
                print(f"skipping thumbor: {exc}", file=sys.stderr)
                continue
            backend = ThumborBackend(url, pid, [THUMBOR_PATH])
        closers.append(backend.close)
        runners[backend.name] = _bind(backend, args.jobs)
    try:
        samples = await common.interleaved(args.rounds, runners)
    finally:
        for close in closers:
            await close()
    return report(samples)


def _bind(backend: Any, jobs: int) -> Callable[[], Any]:
    return lambda: backend.round(jobs, common.PHOTO)


def report(samples: list[common.Sample]) -> dict[str, Any]:
    names = list(dict.fromkeys(s.backend for s in samples))
    summaries = [common.summarize([s for s in samples if s.backend == n]) for n in names]
    common.print_table(
        f"{common.PHOTO} → {WIDTH} px + watermark → JPEG q{QUALITY}; medians over rounds",
        ["backend", "images/s", "p50 ms", "p95 ms", "CPU ms/image", "peak RSS MiB"],
        [
            [s.backend, s.rate, s.p50_ms, s.p95_ms, s.cpu_ms_per_item, s.peak_rss_mib]
            for s in summaries
        ],
    )
    by_name = {s.backend: s for s in summaries}
    wanted = [
        ("embedded (serve)", "vips loop", "rate", 0.90),
        ("production (api+worker)", "vips loop", "rate", 0.90),
        ("production (api+worker)", "vips loop", "cpu", 1.15),
        ("embedded (serve)", "thumbor", "rate", 1.0),
        ("embedded (serve)", "pillow loop", "rate", None),
        ("production (api+worker)", "thumbor", "rate", None),
    ]
    rows = []
    for numerator, denominator, kind, target in wanted:
        if numerator not in by_name or denominator not in by_name:
            continue
        if kind == "rate":
            value = common.ratios(samples, numerator, denominator)
            label, met = f"{numerator} ÷ {denominator}, images/s", target and value >= target
        else:
            top, bottom = by_name[numerator].cpu_ms_per_item, by_name[denominator].cpu_ms_per_item
            value = (top or 0) / (bottom or 1)
            label, met = f"{numerator} ÷ {denominator}, CPU per image", target and value <= target
        bound = "-" if target is None else (f"≥ {target}" if kind == "rate" else f"≤ {target}")
        rows.append([label, value, bound, "-" if target is None else ("met" if met else "NOT met")])
    common.print_table(
        "ratios (median of per-round ratios)", ["ratio", "value", "target", ""], rows
    )
    return {"summaries": summaries, "ratios": rows, "samples": samples}


def main() -> None:
    parser = common.parser(__doc__ or "", jobs=30, rounds=7)
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="default: all")
    args = parser.parse_args()
    images = common.image_dir(args.images)
    print(f"load: {common.load_note()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="pixelflow-bench-") as tmp, contextlib.ExitStack() as s:
        payload = asyncio.run(measure(s, args.backend or list(BACKENDS), images, Path(tmp), args))
    payload["settings"] = {"jobs": args.jobs, "rounds": args.rounds}
    common.write_json("worker", args.json, payload)


if __name__ == "__main__":
    main()
