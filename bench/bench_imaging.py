"""Benchmark: a responsive set from the 12 MP photo, decoded once, against one decode per output.

    .venv/bin/python -m bench.bench_imaging [--rounds 5] [--workers 2] [--source PATH]

Run it from the repository's root. Without ``--source`` it times the suite's 12 MP sample photo
(``tests/support/images.py``), generated in memory first.

Prints per-job timings for the shared-decode pipeline (PixelFlow) and for the way an image
server works (one ``thumbnail_buffer`` per URL), then the throughput of ``--workers`` jobs at
once through the adapter's pool. Not a pass/fail test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pyvips

from pixelflow.adapters.imaging.protocol import ImageLimits
from pixelflow.adapters.imaging.vips import VipsImaging, configure_libvips, render_job
from pixelflow.core.models import Step
from tests.support.images import PHOTO_QUALITY, photo_12mp

LIMITS = ImageLimits(max_pixels=100_000_000, max_bytes=50 * 1024 * 1024)
WIDTHS = (1600, 800, 320)

RESPONSIVE: list[Step] = msgspec.convert(
    [
        *(
            {"id": f"w{width}", "action": "resize", "width": width, "format": "jpeg"}
            for width in WIDTHS
        ),
        {"id": "w800-webp", "action": "resize", "width": 800, "format": "webp"},
    ],
    type=list[Step],
)


def per_url(source: bytes) -> None:
    """What an image server does: every URL decodes the source again."""
    for width in WIDTHS:
        pyvips.Image.thumbnail_buffer(source, width).jpegsave_buffer(Q=80, keep="none")
    pyvips.Image.thumbnail_buffer(source, 800).webpsave_buffer(Q=80, keep="none")


def timed(label: str, rounds: int, run: Callable[[], object]) -> None:
    run()  # warm-up: first calls load codecs and fonts
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    print(
        f"{label:<34} median {statistics.median(samples) * 1000:7.1f} ms"
        f"   min {min(samples) * 1000:7.1f} ms   ({rounds} rounds)"
    )


async def throughput(source: bytes, workers: int, jobs: int) -> None:
    imaging = VipsImaging(workers=workers)
    try:
        await imaging.render(source, RESPONSIVE, LIMITS)
        started = time.perf_counter()
        await asyncio.gather(*(imaging.render(source, RESPONSIVE, LIMITS) for _ in range(jobs)))
        elapsed = time.perf_counter() - started
    finally:
        await imaging.close()
    print(f"{jobs} jobs on {workers} workers: {elapsed:.2f} s, {jobs / elapsed:.2f} jobs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="an image file (default: the 12 MP sample)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    if args.source is None:
        name, source = "photo-12mp.jpg", bytes(photo_12mp().jpegsave_buffer(Q=PHOTO_QUALITY))
    else:
        name, source = args.source.name, args.source.read_bytes()
    configure_libvips()
    widths = "/".join(map(str, WIDTHS))
    print(f"{name}: {len(source)} bytes; outputs {widths} px JPEG + 800 px WebP")
    timed("pixelflow (decode once)", args.rounds, lambda: render_job(source, RESPONSIVE, LIMITS))
    timed("image server (decode per URL)", args.rounds, lambda: per_url(source))
    asyncio.run(throughput(source, args.workers, jobs=args.workers * args.rounds))


if __name__ == "__main__":
    main()
