"""Benchmark: the responsive set (1600/800 JPEG, 800 WebP, 320 JPEG) per source, against thumbor.

    .venv/bin/python bench/renditions.py [--backend embedded --backend thumbor ...]
        [--jobs 12] [--rounds 5] [--images DIR] [--json PATH]

PixelFlow makes the four renditions in one job (one decode, shared); thumbor gets one URL per
rendition, as an image server is used. The loops do what a hand-written script would: one
decode per rendition. If thumbor cannot be installed here, the Pillow loop (the same engine,
without the server) is the comparison. Figures are sources/s, medians over interleaved rounds.
Not a pass/fail test.
"""

from __future__ import annotations

import sys

import common
from backends import NAMES, Workload, run_rounds
from common import Ratio
from loops import QUALITY, RENDITIONS

SERVE = "embedded (serve)"
RATIOS = [
    Ratio(SERVE, "thumbor", target=2.0),
    Ratio(SERVE, "pillow loop"),
    Ratio(SERVE, "vips loop"),
    Ratio("production (api+worker)", "thumbor"),
]


def workload() -> Workload:
    steps = []
    paths = []
    for width, fmt in RENDITIONS:
        steps.append(
            {"id": f"w{width}-{fmt}", "action": "resize", "width": width, "format": fmt}
            | {"quality": QUALITY}
        )
        filters = f"format({fmt}):quality({QUALITY})" if fmt == "webp" else f"quality({QUALITY})"
        paths.append(f"/unsafe/{width}x0/filters:{filters}/{{image}}")
    return Workload(pipeline=steps, loop="renditions", thumbor_paths=paths)


def main() -> None:
    parser = common.parser(__doc__ or "", jobs=12, rounds=5)
    parser.add_argument(
        "--backend",
        action="append",
        choices=NAMES,
        help="default: embedded, thumbor, pillow, vips",
    )
    args = parser.parse_args()
    images = common.image_dir(args.images)
    print(f"load: {common.load_note()}", file=sys.stderr)
    chosen = args.backend or ["embedded", "thumbor", "pillow", "vips"]
    samples = run_rounds(chosen, workload(), args, images)
    widths = ", ".join(f"{width} {fmt}" for width, fmt in RENDITIONS)
    title = f"{common.PHOTO} → {widths} (q{QUALITY}) per source; medians over rounds"
    payload = common.report(samples, title, "source", RATIOS)
    payload["settings"] = {"jobs": args.jobs, "rounds": args.rounds, "set": args.set}
    common.write_json("renditions", args.json, payload)


if __name__ == "__main__":
    main()
