"""The allocator set-up of a rendering process, in fresh interpreters: big buffers freed by
another thread are kept for the next job instead of being faulted in again page by page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# A job's shape: a source, its decode and an intermediate allocated in a pool thread, the
# decode freed by the event loop's thread. Prints whether the set-up applied and the page
# faults per job once warm.
_JOBS = textwrap.dedent(
    """
    import json, resource, sys
    from concurrent.futures import ThreadPoolExecutor
    from pixelflow.adapters.imaging.allocator import keep_freed_buffers

    applied = keep_freed_buffers() if sys.argv[1] == "tuned" else None
    pool = ThreadPoolExecutor(2)

    def job(i):
        source = bytearray(3_500_000)
        decoded = bytearray(9_000_000)
        intermediate = bytearray(5_800_000 + i % 7 * 4096)
        del source, intermediate
        return decoded

    for _ in range(5):
        list(pool.map(job, range(4)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        decoded = list(pool.map(job, range(4)))
        del decoded  # freed in this thread, not the one that allocated them
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"applied": applied, "faults_per_job": faults / 40}))
    """
)


def _run(mode: str, **env: str) -> dict[str, object]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"
    }
    output = subprocess.run(
        [sys.executable, "-c", _JOBS, mode],
        env=environment | env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    result: dict[str, object] = json.loads(output)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_pixel_buffers_are_reused_instead_of_faulted_in_again() -> None:
    untuned = _run("untuned")
    tuned = _run("tuned")
    assert tuned["applied"] is True
    # 9 MB is about 2 200 pages: untuned, the decode alone faults that many times per job.
    assert isinstance(untuned["faults_per_job"], float) and untuned["faults_per_job"] > 1000
    # Tuned, what is left is the interpreter's own small allocations: under 100 faults per job
    # on some machines, 110-170 on others, against 3 000+ untuned. A tenth is the bound.
    assert isinstance(tuned["faults_per_job"], float)
    assert tuned["faults_per_job"] < untuned["faults_per_job"] / 10


@pytest.mark.parametrize(
    "setting",
    [
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    ],
)
def test_an_operators_allocator_settings_stand(setting: dict[str, str]) -> None:
    assert _run("tuned", **setting)["applied"] is False
