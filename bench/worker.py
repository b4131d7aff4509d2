"""Benchmark: worker throughput through the real path, against hand-written loops and thumbor.

    .venv/bin/python bench/worker.py [--backend embedded --backend production ...]
        [--jobs 30] [--rounds 7] [--images DIR] [--json PATH]

The work: photo-12mp.jpg → 800 px wide + a text watermark → JPEG q80. Each round gives every
backend the same N images, one after another in a rotating order:

- embedded:    `pixelflow serve` (API and worker in one process, SQLite, files)
- production:  `pixelflow api` + one `pixelflow worker` (PostgreSQL, Redis, SeaweedFS)
- vips:        raw pyvips loop, thumbnail + watermark, one image per thread, 2 threads
- pillow:      Pillow with draft() (1/4-scale JPEG decode), same work, 2 threads
- thumbor:     thumbor 7.8 (PIL engine), 2 processes, its watermark filter with the same text

Printed: images/s, p50/p95 latency (created → succeeded for PixelFlow; from the round's start
for the others), CPU-seconds per image of the process doing the work (serve: API included),
its peak RSS; and the ratios the issue's table asks for. Not a pass/fail test.
"""

from __future__ import annotations

import sys

import common
import pyvips
from backends import NAMES, Workload, run_rounds
from common import Ratio
from loops import OPACITY, QUALITY, TEXT, WIDTH

SERVE, PRODUCTION = "embedded (serve)", "production (api+worker)"
RATIOS = [
    Ratio(SERVE, "vips loop", target=0.90),
    Ratio(PRODUCTION, "vips loop", target=0.90),
    Ratio(PRODUCTION, "vips loop", "cpu", target=1.15),
    Ratio(SERVE, "thumbor", target=1.0),
    Ratio(SERVE, "pillow loop"),
    Ratio(PRODUCTION, "thumbor"),
]


def watermark_png() -> bytes:
    """thumbor's watermark filter takes an image: the same text, drawn once, white on alpha,
    the height PixelFlow gives it on an 800×600 output (5% of the shorter side)."""
    mask = pyvips.Image.text(TEXT, font="DejaVu Sans Bold", height=30, width=WIDTH)
    ink = mask.new_from_image([255, 255, 255]).copy(interpretation="srgb")
    data: bytes = ink.bandjoin(mask).pngsave_buffer()
    return data


def workload() -> Workload:
    return Workload(
        pipeline=[
            {"id": "small", "action": "resize", "width": WIDTH, "emit": False},
            {
                "id": "marked",
                "action": "watermark",
                "input": "small",
                "watermark": {"text": TEXT, "opacity": OPACITY},
                "format": "jpeg",
                "quality": QUALITY,
            },
        ],
        loop="watermark",
        # 15 px (2.5% of 600) from the bottom-right corner, at PixelFlow's opacity.
        thumbor_paths=[
            f"/unsafe/{WIDTH}x0/filters:quality({QUALITY})"
            f":watermark(mark.png,-15,-15,{round(100 * (1 - OPACITY))})/{{image}}"
        ],
        thumbor_files={"mark.png": watermark_png()},
    )


def main() -> None:
    parser = common.parser(__doc__ or "", jobs=30, rounds=7)
    parser.add_argument("--backend", action="append", choices=NAMES, help="default: all")
    args = parser.parse_args()
    images = common.image_dir(args.images)
    print(f"load: {common.load_note()}", file=sys.stderr)
    samples = run_rounds(args.backend or list(NAMES), workload(), args, images)
    title = f"{common.PHOTO} → {WIDTH} px + watermark → JPEG q{QUALITY}; medians over rounds"
    payload = common.report(samples, title, "image", RATIOS)
    payload["settings"] = {"jobs": args.jobs, "rounds": args.rounds, "set": args.set}
    common.write_json("worker", args.json, payload)


if __name__ == "__main__":
    main()
