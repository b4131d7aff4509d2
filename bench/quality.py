"""Benchmark: what PIXELFLOW_JPEG_SHRINK costs in quality and buys in time.

    .venv/bin/python bench/quality.py [--widths 1600 800 320] [--rounds 5] [--images DIR]

For each output width, the source is resized by PixelFlow's imaging code in each mode ("fast":
the largest power-of-two JPEG shrink not above the scale, as imgproxy and thumbor; "quality":
libvips thumbnail's 2× margin) and compared, before any encoding, with the same resize from a
full-size decode: PSNR and SSIM (luma, 7×7 windows, computed with numpy). For scale, the
same figures for the full-size decode's own JPEG q80 encode. Times are the process's CPU
milliseconds (steadier than wall time on a shared machine) for decode + resize + JPEG encode,
medians over rounds with the modes interleaved. Not a pass/fail test.

Then the widths as one job's set, largest first: each output against the same reference, with
"fast" resampling each size from the next larger one at least twice its size (the default), with
"fast" resampling every size from the decode, and with "quality"; the time is the whole set's.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import common
import msgspec
import numpy as np
import pyvips

from pixelflow.adapters.imaging.protocol import ImageLimits
from pixelflow.adapters.imaging.vips import configure_libvips, render_job
from pixelflow.core.models import Step
from pixelflow.core.pipeline import JPEG_SHRINK_MODES, SHRINK_HEADROOM

LIMITS = ImageLimits(max_pixels=100_000_000, max_bytes=50 * 1024 * 1024)


def pixels(image: Any) -> np.ndarray:
    """Luma (BT.601) as float64, from an 8-bit sRGB image."""
    rgb = np.ndarray(
        buffer=image.write_to_memory(),
        dtype=np.uint8,
        shape=(image.height, image.width, image.bands),
    )[..., :3].astype(np.float64)
    luma: np.ndarray = rgb @ np.array([0.299, 0.587, 0.114])
    return luma


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _box(values: np.ndarray, size: int) -> np.ndarray:
    """Mean over every size×size window (valid positions only), by integral image."""
    total = np.pad(values, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    window: np.ndarray = (
        total[size:, size:] - total[:-size, size:] - total[size:, :-size] + total[:-size, :-size]
    )
    return window / (size * size)


def ssim(a: np.ndarray, b: np.ndarray, size: int = 7) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mean_a, mean_b = _box(a, size), _box(b, size)
    var_a = _box(a * a, size) - mean_a**2
    var_b = _box(b * b, size) - mean_b**2
    covariance = _box(a * b, size) - mean_a * mean_b
    index = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / (
        (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(index.mean())


def resized(source: bytes, width: int, headroom: float, fmt: str) -> Any:
    [rendered] = resized_set(source, [width], headroom, fmt)
    return rendered


def resized_set(
    source: bytes, widths: list[int], headroom: float, fmt: str, *, cascade: bool = True
) -> list[Any]:
    raw = [{"id": f"w{w}", "action": "resize", "width": w, "format": fmt} for w in widths]
    steps = msgspec.convert(raw, type=list[Step])
    return render_job(source, steps, LIMITS, headroom=headroom, cascade_resizes=cascade)


# The responsive set's variants: (name, headroom, whether smaller sizes start from larger ones).
SET_VARIANTS = [
    ("fast, cascaded", SHRINK_HEADROOM["fast"], True),
    ("fast, each from the decode", SHRINK_HEADROOM["fast"], False),
    ("quality", SHRINK_HEADROOM["quality"], False),
]


def compare_set(
    source: bytes, widths: list[int], references: dict[int, np.ndarray], rounds: int
) -> tuple[list[list[object]], list[dict[str, object]]]:
    """The widths as one job: each variant's outputs against ``references``, and its CPU."""
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in SET_VARIANTS}
    for _ in range(max(1, rounds)):
        for name, headroom, cascade in SET_VARIANTS:
            started = time.process_time()
            resized_set(source, widths, headroom, "jpeg", cascade=cascade)
            cpu[name].append(time.process_time() - started)
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    for name, headroom, cascade in SET_VARIANTS:
        outputs = resized_set(source, widths, headroom, "png", cascade=cascade)
        milliseconds = statistics.median(cpu[name]) * 1000
        for width, output in zip(widths, outputs, strict=True):
            actual = pixels(pyvips.Image.new_from_buffer(output.data, ""))
            figures = (psnr(references[width], actual), ssim(references[width], actual))
            rows.append([f"{width} px", name, *figures, milliseconds])
            results.append(
                {"width": width, "variant": name, "psnr_db": figures[0], "ssim": figures[1]}
                | {"set_cpu_ms": milliseconds}
            )
    return rows, results


def main() -> None:
    parser = common.parser(__doc__ or "", jobs=None, rounds=5)
    parser.add_argument("--widths", type=int, nargs="+", default=[1600, 800, 320])
    args = parser.parse_args()
    source = (common.image_dir(args.images) / common.PHOTO).read_bytes()
    configure_libvips()
    print(f"load: {common.load_note()}", file=sys.stderr)
    full = pyvips.Image.new_from_buffer(source, "", access="sequential").copy_memory()
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    references: dict[int, np.ndarray] = {}
    for width in args.widths:
        reference = full.thumbnail_image(width, size="down")
        expected = references[width] = pixels(reference)
        encoded = pyvips.Image.new_from_buffer(reference.jpegsave_buffer(Q=80), "")
        scale = (psnr(expected, pixels(encoded)), ssim(expected, pixels(encoded)))
        rows.append([f"{width} px", "full decode, JPEG q80 encode", *scale, None])
        cpu: dict[str, list[float]] = {mode: [] for mode in JPEG_SHRINK_MODES}
        for _ in range(max(1, args.rounds)):  # the modes interleaved; CPU time of the process
            for mode in JPEG_SHRINK_MODES:
                started = time.process_time()
                resized(source, width, SHRINK_HEADROOM[mode], "jpeg")
                cpu[mode].append(time.process_time() - started)
        for mode in JPEG_SHRINK_MODES:
            lossless = resized(source, width, SHRINK_HEADROOM[mode], "png")
            actual = pixels(pyvips.Image.new_from_buffer(lossless.data, ""))
            figures = (psnr(expected, actual), ssim(expected, actual))
            milliseconds = statistics.median(cpu[mode]) * 1000
            rows.append([f"{width} px", f"{mode} shrink", *figures, milliseconds])
            results.append(
                {"width": width, "mode": mode, "psnr_db": figures[0], "ssim": figures[1]}
                | {"cpu_ms": milliseconds, "jpeg_q80_psnr_db": scale[0], "jpeg_q80_ssim": scale[1]}
            )
    common.print_table(
        f"{common.PHOTO}: resize against the same resize of a full-size decode (luma)",
        ["output", "decode", "PSNR dB", "SSIM", "CPU ms (JPEG out)"],
        [[r[0], r[1], r[2], f"{r[3]:.4f}", r[4]] for r in rows],
    )
    widths = sorted(args.widths, reverse=True)
    set_rows, set_results = compare_set(source, widths, references, args.rounds)
    common.print_table(
        f"{common.PHOTO}: the set of {', '.join(map(str, widths))} px in one job, same references",
        ["output", "set", "PSNR dB", "SSIM", "CPU ms (set, JPEG out)"],
        [[r[0], r[1], r[2], f"{r[3]:.4f}", r[4]] for r in set_rows],
    )
    payload = {"results": results, "set": set_results, "rounds": args.rounds}
    common.write_json("quality", args.json, payload)


if __name__ == "__main__":
    main()
