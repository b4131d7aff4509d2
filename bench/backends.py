"""The systems under test, each able to run one round of N work items and report a Sample.

- ``PixelflowBackend``: real processes started with the test suite's helpers — ``pixelflow
  serve`` (embedded), or ``pixelflow api`` + one ``pixelflow worker`` on PostgreSQL, Redis and
  SeaweedFS (production). A round submits N jobs at once (create + start, ``local_file``
  sources, outputs written to storage) and waits for all of them.
- ``LoopBackend``: bench/loops.py in a child process (raw pyvips, Pillow ``draft()``).
- ``ThumborBackend``: thumbor from PyPI in a venv of its own, ``--processes`` = cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import common
import httpx
from common import CACHE_DIR, REPO, Sample, cpu_seconds, peak_rss_mib, reset_peak_rss

from tests.support.deployment import Deployment, production_deployment
from tests.support.processes import PixelflowProcess, free_port
from tests.support.seaweed import SeaweedServer

CORES = 2  # the issue's comparison: every system gets the same two cores' worth of workers
# How often the client lists the jobs to see a round end. The figures come from the jobs' own
# timestamps, so this only sets how soon the next round starts; each look costs the API, the
# database and the client CPU on the cores being measured, so it is not done often.
POLL_SECONDS = 1.0
THUMBOR_VERSION = "7.8.0"
USER = "bench"


# -- PixelFlow -------------------------------------------------------------------------------


class PixelflowBackend:
    def __init__(self, name: str, url: str, worker_pid: int, pipeline: list[dict[str, Any]]):
        self.name = name
        self.url = url
        self.worker_pid = worker_pid
        self.pipeline = pipeline
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # aiohttp rather than httpx: the client shares the two cores with the system under
        # test, and aiohttp costs about half as much CPU per request.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                self.url,
                headers={"X-User-ID": USER},
                timeout=aiohttp.ClientTimeout(total=60),
                # uvicorn closes a connection idle for 5 s (the other backends' turns can take
                # that long): drop idle ones sooner, so none is reused as the server closes it.
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=2),
            )
        return self._session

    async def round(self, jobs: int, image: str) -> Sample:
        reset_peak_rss(self.worker_pid)
        cpu_before = cpu_seconds(self.worker_pid)
        body = {"source_type": "local_file", "object_key": image, "pipeline": self.pipeline}
        ids = await asyncio.gather(*(self._submit(body) for _ in range(jobs)))
        records = await self._wait(set(ids))
        cpu = cpu_seconds(self.worker_pid) - cpu_before
        created = [_time(job["created_at"]) for job in records]
        finished = [_time(job["finished_at"]) for job in records]
        return Sample(
            backend=self.name,
            items=jobs,
            elapsed=max(finished) - min(created),
            latencies=[end - start for start, end in zip(created, finished, strict=True)],
            cpu=cpu,
            peak_rss_mib=peak_rss_mib(self.worker_pid),
        )

    async def _submit(self, body: dict[str, Any]) -> str:
        async with self.session.post("/v1/jobs", json=body) as created:
            assert created.status == 202, await created.text()
            job_id: str = (await created.json())["job_id"]
        async with self.session.post(f"/v1/jobs/{job_id}/start") as started:
            assert started.status == 202, await started.text()
        return job_id

    async def _wait(self, ids: set[str], within: float = 600) -> list[dict[str, Any]]:
        """Poll the newest jobs in one request (not one per job: the API shares the cores)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            async with self.session.get("/v1/jobs", params={"limit": min(100, len(ids))}) as page:
                assert page.status == 200, await page.text()
                listed = (await page.json())["jobs"]
            jobs = [job for job in listed if job["id"] in ids]
            failed = [job for job in jobs if job["status"] in {"failed", "canceled"}]
            if failed:
                raise RuntimeError(f"{self.name}: a job did not succeed: {failed[0]}")
            if len(jobs) == len(ids) and all(job["status"] == "succeeded" for job in jobs):
                return jobs
        raise RuntimeError(f"{self.name}: jobs not done after {within} s")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


# Both backends get the same worker shape: two jobs in libvips at once (the 2 cores);
# everything else is the product's default unless --set says otherwise.
WORKER_ENV = {
    "WORKER_MAX_ACTIVE_JOBS": str(CORES),
    "PIXELFLOW_RATE_LIMIT_CAPACITY": "0",
}


@contextlib.contextmanager
def embedded(workdir: Path, images: Path, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``pixelflow serve``: (its URL, its pid)."""
    port = free_port()
    process = PixelflowProcess(
        ["serve"],
        env={
            **WORKER_ENV,
            "PIXELFLOW_API_ADDR": f"127.0.0.1:{port}",
            "PIXELFLOW_API_METRICS_ADDR": "",
            "WORKER_METRICS_ADDR": "",
            "PIXELFLOW_DATA_DIR": str(workdir / "serve"),
            "PIXELFLOW_LOCAL_SOURCE_ROOT": str(images),
            "PIXELFLOW_LOG_LEVEL": "warning",
            **env,
        },
        log_path=workdir / "serve.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        process.wait_http(f"{url}/readyz", timeout=60)
        assert process.process is not None
        yield url, process.process.pid
    finally:
        process.stop(timeout=30)


@contextlib.contextmanager
def production(
    workdir: Path, images: Path, env: dict[str, str], *, api: bool = True, workers: int = 1
) -> Iterator[Deployment]:
    """``pixelflow api`` + ``workers`` × ``pixelflow worker`` on PostgreSQL, Redis, SeaweedFS."""
    with (
        SeaweedServer(workdir / "seaweed") as seaweed,
        production_deployment(
            workdir / "production",
            seaweed.endpoint,
            **WORKER_ENV,
            PIXELFLOW_LOCAL_SOURCE_ROOT=str(images),
            **env,
        ) as deployment,
    ):
        deployment.start(api=api, workers=tuple(f"worker-{i}" for i in range(workers)))
        yield deployment


def worker_pid(deployment: Deployment) -> int:
    process = deployment.processes["worker-0"].process
    assert process is not None
    return process.pid


# -- hand-written loops ----------------------------------------------------------------------


class LoopBackend:
    def __init__(self, engine: str, workload: str, images: Path) -> None:
        self.name = f"{engine} loop"
        self.engine = engine
        self.workload = workload
        self.images = images

    async def round(self, jobs: int, image: str) -> Sample:
        command = [
            sys.executable,
            str(REPO / "bench" / "loops.py"),
            f"--engine={self.engine}",
            f"--workload={self.workload}",
            f"--image={self.images / image}",
            f"--jobs={jobs}",
            f"--threads={CORES}",
        ]
        child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
        output, _ = await child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"{self.name} exited with {child.returncode}")
        result = json.loads(output)
        return Sample(
            backend=self.name,
            items=jobs,
            elapsed=result["elapsed"],
            latencies=result["latencies"],
            cpu=result["cpu"],
            peak_rss_mib=result["peak_rss_mib"],
        )

    async def close(self) -> None:
        pass


# -- thumbor ---------------------------------------------------------------------------------


def thumbor_bin() -> Path | None:
    """thumbor's executable in a venv of its own under the cache directory, installed from PyPI
    on first use; None (with the reason on stderr) when it cannot be installed here."""
    venv = CACHE_DIR / f"thumbor-{THUMBOR_VERSION}"
    executable = venv / "bin" / "thumbor"
    if executable.is_file():
        return executable
    print(f"installing thumbor {THUMBOR_VERSION} into {venv} ...", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"thumbor=={THUMBOR_VERSION}"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        print(f"thumbor could not be installed: {exc}\n{stderr.decode()[-2000:]}", file=sys.stderr)
        return None
    return executable


class ThumborBackend:
    """A thumbor server; a round requests every path once per item, ``2 × CORES`` at a time."""

    def __init__(self, url: str, pid: int, paths: list[str]) -> None:
        self.name = "thumbor"
        self.url = url
        self.pid = pid
        self.paths = paths
        self._session: aiohttp.ClientSession | None = None

    async def round(self, jobs: int, image: str) -> Sample:
        reset_peak_rss(self.pid)
        cpu_before = cpu_seconds(self.pid)
        slots = asyncio.Semaphore(2 * CORES)
        if self._session is None:  # the same client as PixelflowBackend's, for the same reason
            # A connection per request: thumbor's processes share one listening socket, and a
            # kept-alive connection stays with the process that accepted it, which could
            # leave one process with most of the work.
            self._session = aiohttp.ClientSession(
                self.url,
                timeout=aiohttp.ClientTimeout(total=120),
                connector=aiohttp.TCPConnector(force_close=True),
            )
        session = self._session
        started = time.perf_counter()

        async def one_item() -> float:
            async def fetch(path: str) -> None:
                async with slots, session.get(path.format(image=image)) as response:
                    await response.read()
                if response.status != 200:
                    raise RuntimeError(f"thumbor answered {response.status} for {path}")

            await asyncio.gather(*(fetch(path) for path in self.paths))
            return time.perf_counter() - started

        latencies = await asyncio.gather(*(one_item() for _ in range(jobs)))
        return Sample(
            backend=self.name,
            items=jobs,
            elapsed=time.perf_counter() - started,
            latencies=list(latencies),
            cpu=cpu_seconds(self.pid) - cpu_before,
            peak_rss_mib=peak_rss_mib(self.pid),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@contextlib.contextmanager
def thumbor(
    workdir: Path, images: Path, extra_files: dict[str, bytes]
) -> Iterator[tuple[str, int]]:
    """A thumbor server over ``images`` (plus ``extra_files``): (its URL, its pid)."""
    executable = thumbor_bin()
    if executable is None:
        raise RuntimeError("thumbor is not available")
    root = workdir / "thumbor-root"
    root.mkdir(parents=True, exist_ok=True)
    for entry in images.iterdir():
        link = root / entry.name
        if not link.exists():
            link.symlink_to(entry)
    for name, data in extra_files.items():
        (root / name).write_bytes(data)
    config = workdir / "thumbor.conf"
    # Baseline JPEGs with optimized Huffman tables, as PixelFlow and the loops write them:
    # thumbor's default (PROGRESSIVE_JPEG = True) costs Pillow about twice the encode CPU for
    # files ~3% smaller, which would not be the same work.
    config.write_text(
        "\n".join(
            [
                "LOADER = 'thumbor.loaders.file_loader'",
                f"FILE_LOADER_ROOT_PATH = {str(root)!r}",
                "STORAGE = 'thumbor.storages.no_storage'",
                "RESULT_STORAGE = None",
                "ENGINE = 'thumbor.engines.pil'",
                "ALLOW_UNSAFE_URL = True",
                "QUALITY = 80",
                "PROGRESSIVE_JPEG = False",
                "WEBP_QUALITY = 80",
                "AUTO_WEBP = False",
                "PRESERVE_EXIF_INFO = False",
                "MAX_AGE = 0",
            ]
        )
        + "\n"
    )
    port = free_port()
    log = (workdir / "thumbor.log").open("ab")
    process = subprocess.Popen(
        [
            str(executable),
            "-c",
            str(config),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            f"--processes={CORES}",
            "-l",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={key: value for key, value in os.environ.items() if not key.startswith("PYTHON")},
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthcheck", process)
        yield url, process.pid
    finally:
        # --processes forks: stop the whole process group it was started in.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


def wait_http(
    url: str, process: subprocess.Popen[bytes], *, timeout: float = 60, accept_status: int = 200
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == accept_status:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


# -- one benchmark's set of backends -------------------------------------------------------

NAMES = ("embedded", "production", "vips", "pillow", "thumbor")


@dataclass
class Workload:
    """The same work as each backend spells it."""

    pipeline: list[dict[str, Any]]  # a PixelFlow job's steps
    loop: str  # bench/loops.py --workload
    thumbor_paths: list[str]  # thumbor URLs per item; {image} is the source's name
    thumbor_files: dict[str, bytes] = field(default_factory=dict)  # e.g. a watermark image


async def run_interleaved(
    stack: contextlib.ExitStack,
    chosen: list[str],
    workload: Workload,
    *,
    images: Path,
    workdir: Path,
    jobs: int,
    rounds: int,
    env: dict[str, str],
) -> list[Sample]:
    """Start the ``chosen`` backends (stopped by ``stack``; ``env`` set for PixelFlow's
    processes) and run the rounds."""
    runners: dict[str, Callable[[], Any]] = {}
    closers = []
    for name in chosen:
        backend: Any
        if name == "embedded":
            url, pid = stack.enter_context(embedded(workdir, images, env))
            backend = PixelflowBackend("embedded (serve)", url, pid, workload.pipeline)
        elif name == "production":
            deployment = stack.enter_context(production(workdir, images, env))
            backend = PixelflowBackend(
                "production (api+worker)", deployment.url, worker_pid(deployment), workload.pipeline
            )
        elif name in ("vips", "pillow"):
            backend = LoopBackend(name, workload.loop, images)
        else:
            try:
                url, pid = stack.enter_context(thumbor(workdir, images, workload.thumbor_files))
            except RuntimeError as exc:
                print(f"skipping thumbor: {exc}", file=sys.stderr)
                continue
            backend = ThumborBackend(url, pid, workload.thumbor_paths)
        closers.append(backend.close)
        runners[backend.name] = _bound(backend, jobs)
    try:
        return await common.interleaved(rounds, runners)
    finally:
        for close in closers:
            await close()


def run_rounds(
    chosen: list[str], workload: Workload, args: argparse.Namespace, images: Path
) -> list[Sample]:
    """Start the ``chosen`` backends in a scratch directory, run ``args.rounds`` interleaved
    rounds of ``args.jobs`` items (``--set`` settings passed to PixelFlow), and stop them."""
    with (
        tempfile.TemporaryDirectory(prefix="pixelflow-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        return asyncio.run(
            run_interleaved(
                stack,
                chosen,
                workload,
                images=images,
                workdir=Path(tmp),
                jobs=args.jobs,
                rounds=args.rounds,
                env=common.settings(args.set),
            )
        )


def _bound(backend: Any, jobs: int) -> Callable[[], Any]:
    return lambda: backend.round(jobs, common.PHOTO)
