"""The baselines: hand-written loops over the same images, one image per thread.

Run by the benchmarks as a child process per round (so its CPU time and memory are its own)::

    python bench/loops.py --engine vips|pillow --workload watermark|renditions \
        --image photo-12mp.jpg --jobs 30 --threads 2

and prints one JSON object: elapsed seconds, each item's latency from the common start, CPU
seconds and peak RSS. ``vips`` is what a libvips user writes (``thumbnail_buffer``, which keeps
libvips' own shrink-on-load margin); ``pillow`` decodes with ``draft()`` at the largest
power-of-two JPEG reduction, as thumbor's PIL engine does.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

TEXT = "© PixelFlow"
WIDTH = 800
QUALITY = 80
OPACITY = 0.65  # PixelFlow's default
# (width, format) of the responsive set: what `renditions` makes of every source.
RENDITIONS = ((1600, "jpeg"), (800, "jpeg"), (800, "webp"), (320, "jpeg"))


def font_file() -> str:
    return subprocess.run(
        ["fc-match", "-f", "%{file}", "DejaVu Sans:bold"], capture_output=True, text=True
    ).stdout


# -- libvips ---------------------------------------------------------------------------------


def vips_engine(workload: str) -> Callable[[bytes], None]:
    import pyvips

    pyvips.concurrency_set(1)  # parallelism comes from the threads, as in PixelFlow
    pyvips.cache_set_max(0)  # every item decodes anew

    def watermark(data: bytes) -> None:
        image = pyvips.Image.thumbnail_buffer(data, WIDTH)
        height = round(min(image.width, image.height) * 0.05)
        margin = round(min(image.width, image.height) * 0.025)
        mask = pyvips.Image.text(html.escape(TEXT), font="DejaVu Sans Bold", dpi=int(height * 7.6))
        ink = mask.new_from_image([255, 255, 255]).copy(interpretation="srgb")
        overlay = ink.bandjoin((mask * OPACITY).cast("uchar"))
        left, top = image.width - mask.width - margin, image.height - mask.height - margin
        marked = image.composite2(overlay, "over", x=left, y=top).extract_band(0, n=3)
        marked.cast("uchar").jpegsave_buffer(Q=QUALITY, optimize_coding=True, keep="none")

    def renditions(data: bytes) -> None:
        for width, fmt in RENDITIONS:
            image = pyvips.Image.thumbnail_buffer(data, width)
            if fmt == "webp":
                image.webpsave_buffer(Q=QUALITY, keep="none")
            else:
                image.jpegsave_buffer(Q=QUALITY, optimize_coding=True, keep="none")

    return watermark if workload == "watermark" else renditions


# -- Pillow ----------------------------------------------------------------------------------


def pillow_engine(workload: str) -> Callable[[bytes], None]:
    from PIL import Image, ImageDraw, ImageFont

    fonts: dict[int, ImageFont.FreeTypeFont] = {}
    path = font_file()

    def resized(data: bytes, width: int) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        height = round(image.height * width / image.width)
        image.draft("RGB", (width, height))  # JPEG: decode at 1/2, 1/4 or 1/8 when that's enough
        return image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)

    def watermark(data: bytes) -> None:
        image = resized(data, WIDTH)
        height = round(min(image.size) * 0.05)
        margin = round(min(image.size) * 0.025)
        font = fonts.setdefault(height, ImageFont.truetype(path, height))
        layer = Image.new("RGBA", image.size, (255, 255, 255, 0))
        draw = ImageDraw.Draw(layer)
        _, _, right, bottom = draw.textbbox((0, 0), TEXT, font=font)
        position = (image.width - right - margin, image.height - bottom - margin)
        draw.text(position, TEXT, font=font, fill=(255, 255, 255, round(255 * OPACITY)))
        marked = Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")
        marked.save(io.BytesIO(), "JPEG", quality=QUALITY, optimize=True)

    def renditions(data: bytes) -> None:
        for width, fmt in RENDITIONS:
            image = resized(data, width)
            if fmt == "webp":
                image.save(io.BytesIO(), "WEBP", quality=QUALITY)
            else:
                image.save(io.BytesIO(), "JPEG", quality=QUALITY, optimize=True)

    return watermark if workload == "watermark" else renditions


ENGINES = {"vips": vips_engine, "pillow": pillow_engine}


def peak_rss_mib() -> float:
    """This process's VmHWM. (``ru_maxrss`` would not do: Linux carries the parent's peak
    across fork and exec, so a child started by a large process reports at least its size.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(work: Callable[[bytes], None], data: bytes, jobs: int, threads: int) -> dict[str, object]:
    for _ in range(threads):
        work(data)  # warm-up, untimed: codecs, fonts
    remaining = iter(range(jobs))
    lock = threading.Lock()
    latencies: list[float] = []
    cpu_before = time.process_time()
    started = time.perf_counter()

    def worker() -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            work(data)
            with lock:
                latencies.append(time.perf_counter() - started)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {
        "elapsed": time.perf_counter() - started,
        "latencies": latencies,
        "cpu": time.process_time() - cpu_before,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--engine", choices=sorted(ENGINES), required=True)
    args.add_argument("--workload", choices=("watermark", "renditions"), required=True)
    args.add_argument("--image", type=Path, required=True)
    args.add_argument("--jobs", type=int, default=30)
    args.add_argument("--threads", type=int, default=2)
    options = args.parse_args()
    work = ENGINES[options.engine](options.workload)
    result = run(work, options.image.read_bytes(), options.jobs, options.threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
