"""Benchmark: the API's job creation against a bare Starlette endpoint, concurrency 32.

    .venv/bin/python bench/api.py [--seconds 5] [--rounds 5] [--concurrency 32] [--images DIR]

`pixelflow api` runs on the production backends (PostgreSQL, Redis, SeaweedFS; no worker, so
started jobs stay queued); the baseline is bench/bare_app.py, a Starlette JSON endpoint on the
same uvicorn settings. The load comes from bench/loadgen.py, a separate process on loopback with
keep-alive connections. Each round runs, in a rotating order: the bare endpoint, `POST /v1/jobs`
(create) and create then `POST /v1/jobs/{id}/start` (create+start, counted as one operation).
Printed: operations/s, p50/p99 latency, the server's CPU per operation, and the ratios to the
bare endpoint. Not a pass/fail test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import common
from backends import production, wait_http
from common import REPO, Ratio, Sample, cpu_seconds, peak_rss_mib

from tests.support.deployment import Deployment
from tests.support.processes import free_port

BARE, CREATE, CREATE_START = "bare Starlette", "create", "create+start"
RATIOS = [
    Ratio(CREATE, BARE, target=0.30),
    Ratio(CREATE_START, BARE, target=0.20),
    # The server's CPU per operation against the bare endpoint's: on a machine whose other
    # load starves the bare endpoint, this is the steadier figure (1 / the CPU-bound ratio).
    Ratio(CREATE, BARE, "cpu"),
    Ratio(CREATE_START, BARE, "cpu"),
]


@contextlib.contextmanager
def bare_app(workdir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    log = (workdir / "bare.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "bare_app.py"), f"--port={port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v1/jobs", process, accept_status=405)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


def load_round(name: str, url: str, pid: int, mode: str, args: Any, user: str) -> Callable[[], Any]:
    async def run() -> Sample:
        cpu_before = cpu_seconds(pid)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "bench" / "loadgen.py"),
            f"--url={url}",
            f"--mode={mode}",
            f"--concurrency={args.concurrency}",
            f"--seconds={args.seconds}",
            f"--object-key={common.PHOTO}",
            f"--user={user}",
            stdout=subprocess.PIPE,
        )
        output, _ = await child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"the load generator failed against {name}")
        result = json.loads(output)
        if result["errors"]:
            raise RuntimeError(f"{name}: {result['errors']} errors, first: {result['first_error']}")
        return Sample(
            backend=name,
            items=result["operations"],
            elapsed=result["elapsed"],
            latencies=result["latencies"],
            cpu=cpu_seconds(pid) - cpu_before,
            peak_rss_mib=peak_rss_mib(pid),
        )

    return run


async def forget_jobs(deployment: Deployment) -> None:
    """Started jobs left arq keys named by job id: delete them, so the deployment's cleanup
    (which scans every key against every job id) stays quick."""
    ids = await deployment.job_ids()
    async with deployment.redis.client() as redis:
        for start in range(0, len(ids), 1000):
            await redis.delete(*(f"arq:job:{job_id}" for job_id in ids[start : start + 1000]))


def main() -> None:
    parser = common.parser(__doc__ or "", jobs=None, rounds=5)
    parser.add_argument("--seconds", type=float, default=5, help="load per backend per round")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    images = common.image_dir(args.images)
    print(f"load: {common.load_note()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="pixelflow-bench-") as tmp, contextlib.ExitStack() as s:
        workdir = Path(tmp)
        deployment = s.enter_context(
            production(workdir, images, common.settings(args.set), workers=0)
        )
        api = deployment.processes["api"].process
        assert api is not None
        bare_url, bare_pid = s.enter_context(bare_app(workdir))
        user = deployment.user("bench")
        runners = {
            BARE: load_round(BARE, bare_url, bare_pid, "create", args, user),
            CREATE: load_round(CREATE, deployment.url, api.pid, "create", args, user),
            CREATE_START: load_round(
                CREATE_START, deployment.url, api.pid, "create_start", args, user
            ),
        }
        try:
            samples = asyncio.run(common.interleaved(args.rounds, runners))
        finally:
            asyncio.run(forget_jobs(deployment))
    title = (
        f"POST /v1/jobs at concurrency {args.concurrency}, keep-alive, {args.seconds:g} s per "
        "round; medians over rounds"
    )
    payload = common.report(samples, title, "op", RATIOS, tail=99)
    payload["settings"] = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "set": args.set,
    }
    common.write_json("api", args.json, payload)


if __name__ == "__main__":
    main()
