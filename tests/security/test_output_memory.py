"""Output amplification: 12 full-size TIFFs of a 12 MP photo through a real ``serve``.

Each output goes to storage as soon as it is encoded, so the process's peak memory grows by
about one decode plus one output, not by all twelve; past the job's output-byte cap the job
fails with ``output_too_large``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.security.conftest import Target

TWELVE_TIFFS = [{"id": f"t{i}", "action": "convert", "format": "tiff"} for i in range(12)]
MB = 1 << 20
# At the default 100 MP the cost check refuses twelve full-size TIFFs (a worst-case source
# could not be encoded twelve times within the timeout); a 12 MP photo fits under 20 MP.
LIMITS = {
    "PIXELFLOW_MAX_SOURCE_PIXELS": str(20_000_000),
    "PIXELFLOW_MAX_SOURCE_BYTES": str(50 * MB),
}


def peak_rss(pid: int) -> int:
    """VmHWM: the process's high-water mark of resident memory, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


@pytest.fixture
def photo_root(tmp_path: Path, fixtures_dir: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copyfile(fixtures_dir / "photo-12mp.jpg", root / "photo.jpg")
    return root


def job(root: Path) -> dict[str, object]:
    return {"source_type": "local_file", "object_key": "photo.jpg", "pipeline": TWELVE_TIFFS}


def test_twelve_full_size_tiffs_stream_out_without_piling_up(photo_root: Path) -> None:
    target = Target(
        photo_root,
        photo_root.parent / "serve.log",
        PIXELFLOW_MAX_OUTPUT_BYTES=str(1024 * MB),
        **LIMITS,
    ).start()
    try:
        with target.client() as client:
            # Warm up: libvips, the encoders and the thread pool allocate once per process.
            warm = target.run(client, {**job(photo_root), "pipeline": TWELVE_TIFFS[:1]})
            assert warm["status"] == "succeeded", warm
            before = peak_rss(target.pid)
            done = target.run(client, job(photo_root))
            after = peak_rss(target.pid)
        assert done["status"] == "succeeded", done
        total = sum(output["bytes"] for output in done["outputs"])
        assert total > 200 * MB  # held together, these alone would break the bound
        assert after - before < 200 * MB, f"peak RSS grew by {(after - before) / MB:.0f} MiB"
    finally:
        target.process.stop()


def test_past_the_output_cap_the_job_fails_and_keeps_nothing(photo_root: Path) -> None:
    cap = 100 * MB
    log = photo_root.parent / "serve.log"
    target = Target(photo_root, log, PIXELFLOW_MAX_OUTPUT_BYTES=str(cap), **LIMITS).start()
    try:
        with target.client() as client:
            done = target.run(client, job(photo_root))
        assert done["status"] == "failed" and done["error"]["code"] == "output_too_large"
        assert done["attempts"] == 1
        assert str(cap) in done["error"]["message"]
        # The outputs written before the cap was reached were removed with the failure.
        outputs = target.data_dir / "objects" / "outputs" / done["id"]
        assert list(outputs.glob("*.tif*")) == [] if outputs.exists() else True
    finally:
        target.process.stop()
