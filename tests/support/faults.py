"""Fault injection against a real production deployment, and the invariants checked after.

A ``FaultCluster`` is ``pixelflow api`` + two ``pixelflow worker`` processes on PostgreSQL, Redis
and SeaweedFS, wired so that every dependency can fail without disturbing anything shared:

- Redis is a private ``redis-server`` (restart, FLUSHALL);
- PostgreSQL is the machine's server seen through a TCP proxy the cluster cuts and restores;
- S3 is a private SeaweedFS the cluster stops and starts.

Used by the fault suite (``tests/faults/``) and by the soak (``bench/soak.py``). The checks read
the database, Redis and S3 directly, never through the API under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import httpx
import pyvips
from aiobotocore.session import get_session
from redis.asyncio import Redis

from tests.support.deployment import Deployment, production_deployment
from tests.support.processes import PixelflowProcess, free_port
from tests.support.redis_server import RedisServer, private_redis
from tests.support.seaweed import SeaweedServer, running_seaweed
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
WORKERS = ("worker-a", "worker-b")

# Under a second of libvips work per job on a 2400×1800 source: with one job in libvips per
# worker, a batch keeps both workers busy for a few seconds, so faults land mid-job.
GOOD_PIPELINE: list[dict[str, Any]] = [
    {"id": "small", "action": "resize", "width": 320, "format": "webp"},
    {"id": "soft", "action": "blur", "sigma": 30, "format": "jpeg"},
    {"id": "thumb", "action": "resize", "width": 96, "input": "soft", "format": "png"},
]
BAD_PIPELINE: list[dict[str, Any]] = [{"id": "small", "action": "resize", "width": 64}]

Kind = Literal["good", "truncated", "garbage"]
SourceType = Literal["s3_presigned", "local_file"]

# Fault-friendly timings: a 3 s lease and a reconciler pass every second (FAST_TIMINGS), room for
# many retries while a dependency is down, and a short shutdown for SIGTERM tests.
CLUSTER_ENV = {
    "WORKER_MAX_ATTEMPTS": "30",
    "WORKER_JOB_TIMEOUT": "30",
    "WORKER_CONCURRENCY": "2",
    "WORKER_MAX_ACTIVE_JOBS": "1",
    "PIXELFLOW_RATE_LIMIT_CAPACITY": "0",
    # SIGTERM hands back at once what is still running: the hand-back path runs.
    "WORKER_SHUTDOWN_GRACE": "0",
}


def source_images() -> dict[Kind, bytes]:
    """A noisy 2400×1800 JPEG (generated, so the suite needs no sample files), the same JPEG
    truncated, and bytes that are no image at all."""
    size = (2400, 1800)
    bands = [pyvips.Image.gaussnoise(*size, mean=128, sigma=50) for _ in range(3)]
    image = bands[0].bandjoin(bands[1:]).cast("uchar").gaussblur(2)
    good: bytes = image.jpegsave_buffer(Q=85)
    return {"good": good, "truncated": good[: len(good) // 3], "garbage": b"not an image " * 64}


@dataclass
class Submitted:
    job_id: str
    kind: Kind
    source_type: SourceType
    # Set when the test asked to cancel the job: the API's answer (202 or 409).
    cancel_status: int | None = None


@dataclass
class Report:
    """What the invariants found. lost: a job that should have succeeded did not, or a
    succeeded job misses an output; duplicated: more than one usage row, or output objects the
    job does not list; stuck: not terminal within the bound."""

    jobs: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.stuck or self.violations)

    def summary(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "stuck": len(self.stuck),
            "violations": self.violations[:20],
        }


class StatusWatch:
    """Reads every watched job's (status, attempts) from the database every 0.2 s and records
    any move backwards: out of a terminal status, or a lower attempt count."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.job_ids: set[str] = set()
        self.last: dict[str, tuple[str, int]] = {}
        self.backwards: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                await self.poll()
            await asyncio.sleep(0.2)

    async def poll(self) -> None:
        if not self.job_ids:
            return
        conn = await asyncpg.connect(self.database_url, timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT id, status, attempts FROM jobs WHERE id = ANY($1)", list(self.job_ids)
            )
        finally:
            await conn.close()
        for row in rows:
            now = (row["status"], row["attempts"])
            before = self.last.get(row["id"])
            if before is not None:
                if before[0] in TERMINAL and now[0] != before[0]:
                    self.backwards.append(f"{row['id']}: {before[0]} → {now[0]}")
                if now[1] < before[1]:
                    self.backwards.append(f"{row['id']}: attempts {before[1]} → {now[1]}")
            self.last[row["id"]] = now


class FaultCluster:
    def __init__(
        self,
        deployment: Deployment,
        *,
        redis: RedisServer,
        pg_proxy: TcpProxy,
        s3: SeaweedServer,
        source_root: Path,
    ) -> None:
        self.deployment = deployment
        self.redis = redis
        self.pg_proxy = pg_proxy
        self.s3 = s3
        self.source_root = source_root
        self.images = source_images()
        self.metrics_ports = {name: free_port() for name in WORKERS}
        for kind, data in self.images.items():
            (source_root / f"{kind}.jpg").write_bytes(data)
        self.watch = StatusWatch(deployment.database_url)

    # -- processes ---------------------------------------------------------------------------

    def start(self) -> None:
        self.deployment.spawn("api", "api")
        for name in WORKERS:
            self.spawn_worker(name)
        self.deployment.wait_api()
        for name in WORKERS:
            self.wait_worker_ready(name)

    def spawn_worker(self, name: str, *, generation: int = 0) -> PixelflowProcess:
        """Start (or restart, under a new log name) the worker ``name``."""
        key = name if generation == 0 else f"{name}#{generation}"
        return self.deployment.spawn(
            key, "worker", WORKER_METRICS_ADDR=f"127.0.0.1:{self.metrics_ports[name]}"
        )

    def spawn_extra_worker(self, name: str) -> PixelflowProcess:
        """One more worker, beyond the cluster's two (not waited for: it may be waiting)."""
        self.metrics_ports[name] = free_port()
        return self.spawn_worker(name)

    def worker_key(self, name: str) -> str:
        """The process name of worker ``name``'s latest generation."""
        return [key for key in self.deployment.processes if key.split("#")[0] == name][-1]

    def worker(self, name: str) -> PixelflowProcess:
        """The live process of worker ``name`` (its latest generation)."""
        return self.deployment.processes[self.worker_key(name)]

    def restart_worker(self, name: str) -> PixelflowProcess:
        generation = sum(1 for key in self.deployment.processes if key.split("#")[0] == name)
        process = self.spawn_worker(name, generation=generation)
        self.wait_worker_ready(name)
        return process

    def wait_worker_ready(self, name: str, timeout: float = 60) -> None:
        self.worker(name).wait_http(self.worker_readyz(name), timeout=timeout)

    def worker_readyz(self, name: str) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[name]}/readyz"

    def log_marks(self) -> dict[str, int]:
        """How much each process has logged so far (see ``logs_since``)."""
        return {name: len(p.log_text()) for name, p in self.deployment.processes.items()}

    def logs_since(self, marks: dict[str, int]) -> dict[str, str]:
        """What each process logged after ``marks`` were taken."""
        return {
            name: process.log_text()[marks.get(name, 0) :]
            for name, process in self.deployment.processes.items()
        }

    def dead_workers(self) -> list[str]:
        return [
            name
            for name in WORKERS
            if (process := self.worker(name).process) is None or process.poll() is not None
        ]

    # -- faults ------------------------------------------------------------------------------

    def heal(self) -> None:
        """Every dependency up and both workers running again, whatever a scenario left."""
        self.pg_proxy.restore()
        if not self.s3.running:
            self.s3.start()
        if not self.redis.running:
            self.redis.start()
        for name in self.dead_workers():
            self.restart_worker(name)

    def kill_worker(self, name: str) -> None:
        self.worker(name).kill()

    def terminate_worker(self, name: str, timeout: float = 40) -> int | None:
        return self.worker(name).stop(timeout=timeout)

    async def restart_redis(self, down_for: float) -> None:
        self.redis.stop()
        await asyncio.sleep(down_for)
        self.redis.start()

    async def flush_redis(self) -> None:
        async with Redis.from_url(self.redis.url, socket_timeout=5) as redis:
            await redis.flushall()

    async def cut_database(self, down_for: float) -> None:
        self.pg_proxy.cut()
        await asyncio.sleep(down_for)
        self.pg_proxy.restore()

    async def stop_storage(self, down_for: float) -> None:
        self.s3.stop()
        await asyncio.sleep(down_for)
        self.s3.start()

    # -- jobs --------------------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        return self.deployment.client("faults")

    async def submit(
        self,
        client: httpx.AsyncClient,
        kind: Kind = "good",
        source_type: SourceType = "s3_presigned",
        *,
        start: bool = True,
    ) -> Submitted:
        """Create (upload) and start a job, retrying calls a fault refused (bounded)."""
        body: dict[str, Any] = {
            "source_type": source_type,
            "pipeline": GOOD_PIPELINE if kind == "good" else BAD_PIPELINE,
        }
        if source_type == "local_file":
            body["object_key"] = f"{kind}.jpg"
        created = await self.call(client, "POST", "/v1/jobs", json=body)
        job = Submitted(created["job_id"], kind, source_type)
        if source_type == "s3_presigned":
            await self._upload(created["upload"]["presigned_put_url"], self.images[kind])
        self.watch.job_ids.add(job.job_id)
        if start:
            await self.call(client, "POST", f"/v1/jobs/{job.job_id}/start")
        return job

    async def submit_batch(
        self, client: httpx.AsyncClient, count: int, *, seed: int | None = None
    ) -> list[Submitted]:
        """Mostly good jobs, some bad ones, both source types."""
        rng = random.Random(seed)
        kinds: list[Kind] = ["good", "good", "good", "truncated", "garbage"]
        sources: list[SourceType] = ["s3_presigned", "local_file"]
        return [await self.submit(client, rng.choice(kinds), sources[i % 2]) for i in range(count)]

    async def call(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> dict[str, Any]:
        deadline = time.monotonic() + 90
        while True:
            try:
                response = await client.request(method, url, **kwargs)
                if response.status_code < 500:
                    assert response.status_code in {200, 202}, (
                        f"{method} {url}: {response.status_code} {response.text}"
                    )
                    body: dict[str, Any] = response.json()
                    return body
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {url} kept failing\n{self.deployment.logs()}")
            await asyncio.sleep(0.5)

    async def _upload(self, url: str, data: bytes) -> None:
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient(timeout=30) as http:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.put(url, content=data)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError("upload kept failing")
                await asyncio.sleep(0.5)

    async def wait_processing(self, within: float = 30) -> None:
        """Until some watched job is being processed (so the next fault lands mid-job)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await self.watch.poll()
            if any(status == "processing" for status, _ in self.watch.last.values()):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"no job reached processing\n{self.deployment.logs()}")

    # -- invariants --------------------------------------------------------------------------

    async def check(self, jobs: list[Submitted], *, within: float = 120) -> Report:
        """Wait (bounded) for every job to end, then check every invariant directly in the
        database, Redis and S3, and the processes' health."""
        report = Report(jobs=len(jobs))
        rows = await self._settle(jobs, within)
        await self.watch.poll()
        report.violations.extend(self.watch.backwards)
        usage = await self._usage_counts([job.job_id for job in jobs])
        for job in jobs:
            row = rows.get(job.job_id)
            if row is None or row["status"] not in TERMINAL:
                report.stuck.append(job.job_id)
                continue
            await self._check_job(job, row, usage.get(job.job_id, 0), report)
        await self._check_queue(rows, report)
        await self._check_health(report)
        return report

    async def _settle(self, jobs: list[Submitted], within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        ids = [job.job_id for job in jobs]
        rows: dict[str, Any] = {}
        while True:
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                rows = await self._job_rows(ids)
                if all(rows.get(i) and rows[i]["status"] in TERMINAL for i in ids):
                    return rows
            if time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.3)

    async def _check_job(self, job: Submitted, row: Any, usage_rows: int, report: Report) -> None:
        status = row["status"]
        outputs = row["outputs"] or []
        objects = await self._output_objects(job.job_id)
        if job.cancel_status is not None:
            expected = {"canceled"} if job.cancel_status == 202 else {"succeeded", "failed"}
        elif job.kind == "good":
            expected = {"succeeded"}
        else:
            expected = {"failed"}
        if status not in expected:
            target = report.lost if job.kind == "good" else report.violations
            target.append(f"{job.job_id} ({job.kind}, {job.source_type}): {status} {row['error']}")
        if status == "succeeded":
            listed = {o["object_key"]: o["bytes"] for o in outputs}
            if usage_rows != 1:
                (report.duplicated if usage_rows > 1 else report.lost).append(
                    f"{job.job_id}: {usage_rows} usage rows"
                )
            missing = [key for key, size in listed.items() if objects.get(key) != size]
            if missing:
                report.lost.append(f"{job.job_id}: outputs missing or wrong size: {missing}")
            extra = sorted(set(objects) - set(listed))
            if extra:
                report.duplicated.append(f"{job.job_id}: output objects not listed: {extra}")
            emitted = {s["id"] for s in GOOD_PIPELINE if s.get("emit", True)}
            if {o["step_id"] for o in outputs} != emitted:
                report.violations.append(f"{job.job_id}: outputs {outputs} ≠ steps {emitted}")
        else:
            if usage_rows:
                report.violations.append(f"{job.job_id}: {status} with {usage_rows} usage rows")
            if status == "canceled" and objects:
                report.violations.append(f"{job.job_id}: canceled but has outputs {objects}")

    async def _check_queue(self, rows: dict[str, Any], report: Report, within: float = 30) -> None:
        """arq forgets a job once it ends: no task is left behind for an ended job, except one
        still claimed by a worker that was killed after the job ended but before arq's own
        bookkeeping. That claim expires (arq's function timeout + 10 s), the task is delivered
        once more, skipped, and forgotten; so such a task must carry a live, bounded claim."""
        ended = [job_id for job_id, row in rows.items() if row["status"] in TERMINAL]
        claim_bound_ms = (float(self.deployment.env["WORKER_JOB_TIMEOUT"]) + 30 + 10) * 1000
        deadline = time.monotonic() + within
        left: list[str] = []
        async with Redis.from_url(self.redis.url, socket_timeout=5) as redis:
            while True:
                left = []
                for job_id in ended:
                    if not await redis.exists(f"arq:job:{job_id}"):
                        continue
                    claim_ttl = await redis.pttl(f"arq:in-progress:{job_id}")
                    if not 0 < claim_ttl <= claim_bound_ms:
                        left.append(f"arq:job:{job_id} (claim ttl {claim_ttl} ms)")
                if not left or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        if left:
            report.violations.append(f"queue tasks left for ended jobs: {left[:5]}")

    async def _check_health(self, report: Report, within: float = 60) -> None:
        dead = self.dead_workers()
        if dead:
            report.violations.append(f"worker(s) died: {dead}")
        urls = [f"{self.deployment.url}/readyz"] + [
            self.worker_readyz(name) for name in WORKERS if name not in dead
        ]
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=5) as http:
            for url in urls:
                while True:
                    status = None
                    with contextlib.suppress(httpx.HTTPError):
                        status = (await http.get(url)).status_code
                    if status == 200:
                        break
                    if time.monotonic() > deadline:
                        report.violations.append(f"{url} not ready: {status}")
                        break
                    await asyncio.sleep(0.3)

    # -- direct reads ------------------------------------------------------------------------

    async def _job_rows(self, ids: list[str]) -> dict[str, Any]:
        conn = await asyncpg.connect(self.deployment.database_url, timeout=10)
        try:
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            rows = await conn.fetch(
                "SELECT id, status, attempts, outputs, error FROM jobs WHERE id = ANY($1)", ids
            )
        finally:
            await conn.close()
        return {row["id"]: row for row in rows}

    async def _usage_counts(self, ids: list[str]) -> dict[str, int]:
        conn = await asyncpg.connect(self.deployment.database_url, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT job_id, count(*) AS n FROM usage_logs WHERE job_id = ANY($1)"
                " GROUP BY job_id",
                ids,
            )
        finally:
            await conn.close()
        return {row["job_id"]: row["n"] for row in rows}

    async def _output_objects(self, job_id: str) -> dict[str, int]:
        """Every object under ``outputs/<job_id>/`` in the bucket, with its size."""
        endpoint = self.deployment.s3
        session = get_session()
        async with session.create_client(
            "s3",
            endpoint_url=endpoint.endpoint_url,
            region_name=endpoint.region,
            aws_access_key_id=endpoint.access_key,
            aws_secret_access_key=endpoint.secret_key,
        ) as s3:
            listed = await s3.list_objects_v2(
                Bucket=self.deployment.bucket, Prefix=f"outputs/{job_id}/"
            )
        return {item["Key"]: item["Size"] for item in listed.get("Contents", [])}


def _proxied(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    netloc = parts.netloc.rsplit("@", 1)
    user = f"{netloc[0]}@" if len(netloc) == 2 else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


@contextlib.contextmanager
def fault_cluster(workdir: Path, **env: str) -> Iterator[FaultCluster]:
    """Everything started, and everything stopped and removed on exit, failure or not."""
    workdir.mkdir(parents=True, exist_ok=True)
    source_root = workdir / "sources"
    source_root.mkdir(exist_ok=True)
    with (
        private_redis(workdir / "redis") as redis,
        running_seaweed(workdir / "s3") as s3,
        production_deployment(
            workdir / "deployment",
            s3.endpoint,
            redis_url=redis.url,
            PIXELFLOW_LOCAL_SOURCE_ROOT=str(source_root),
            **{**CLUSTER_ENV, **env},
        ) as deployment,
    ):
        target = urlsplit(deployment.database_url)
        with tcp_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
            deployment.env["PIXELFLOW_DATABASE_URL"] = _proxied(deployment.database_url, proxy.port)
            cluster = FaultCluster(
                deployment, redis=redis, pg_proxy=proxy, s3=s3, source_root=source_root
            )
            try:
                cluster.start()
                yield cluster
            finally:
                # Everything back up, so teardown (stop, forget the queue, drop) can run.
                proxy.restore()
                if not s3.running:
                    s3.start()
                if not redis.running:
                    redis.start()
                deployment.stop_all()
