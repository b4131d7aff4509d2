"""The production deployment as real processes: ``pixelflow api`` and any number of
``pixelflow worker``s on a fresh PostgreSQL database, a Redis DB and an S3 bucket.

Typical use::

    with production_deployment(tmp_path, seaweed.endpoint) as deployment:
        deployment.start(api=True, workers=["a", "b"])
        async with deployment.client("alice") as client:
            ...
            job = await deployment.wait_status(client, job_id, {"succeeded"})

Every wait is bounded, and every failure message ends with the tails of the processes' logs.
Teardown stops the processes (even after a failed test), deletes the run's Redis keys and drops
the database.

Redis: the DB ``PIXELFLOW_TEST_E2E_REDIS_URL`` names (default DB 13) may be shared with other
runs, so a deployment never flushes it. Its queue name and user ids carry a run id, and its job
ids are read back from its database: ``forget_queue()`` deletes exactly those keys, which is what
a Redis that lost its data looks like to this deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import httpx

from tests.support.postgres import create_database, drop_database, run_sync
from tests.support.processes import PixelflowProcess, free_port, pixelflow_command
from tests.support.redis import RedisRun
from tests.support.seaweed import S3Endpoint

DEFAULT_E2E_REDIS_URL = "redis://127.0.0.1:6379/13"

# Short timings so recovery paths run in seconds: a 3 s lease, a reconciler pass every second
# (so a lost queued job is re-enqueued after max(2 * 1, 5) = 5 s), retries after 0.5..2 s.
FAST_TIMINGS = {
    "WORKER_LEASE_SECONDS": "3",
    "WORKER_RECONCILE_INTERVAL": "1",
    "WORKER_RETRY_BACKOFF": "0.5",
    "WORKER_RETRY_MAX_BACKOFF": "2",
    "WORKER_JOB_TIMEOUT": "60",
    # These deployments run deliberately slow pipelines (blurs of a 12 MP photo) against a 60 s
    # timeout; the create-time cost check assumes a 100 MP worst case and would refuse them.
    # It is attacked in tests/security and tests/unit/test_cost.py.
    "PIXELFLOW_PIPELINE_BUDGET": "0",
}

# The shared webhook signing secret of header-mode deployments (Standard Webhooks form).
TEST_WEBHOOK_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLXBpeGVsZmxvdy13ZWJob29rcw=="

# Logged by `pixelflow worker` just before arq starts polling.
WORKER_READY = "worker consuming queue"

# Variables a developer's shell may carry that would change what the processes do.
_INHERITED_PREFIXES = ("PIXELFLOW_", "WORKER_", "WEBHOOK_", "AWS_")


def e2e_redis_url() -> str:
    return os.environ.get("PIXELFLOW_TEST_E2E_REDIS_URL", DEFAULT_E2E_REDIS_URL)


class Deployment:
    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str,
        s3: S3Endpoint,
        redis: RedisRun,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.redis = redis
        self.s3 = s3
        self.bucket = f"pixelflow-e2e-{uuid.uuid4().hex[:12]}"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = {
            "PIXELFLOW_DATABASE_URL": database_url,
            "PIXELFLOW_REDIS_URL": redis.url,
            "PIXELFLOW_QUEUE_NAME": redis.queue_name,
            "PIXELFLOW_STORAGE_URL": f"s3://{self.bucket}",
            "PIXELFLOW_S3_ENDPOINT_URL": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_DEFAULT_REGION": s3.region,
            "PIXELFLOW_AUTH": "header",
            # Signs every webhook in header mode; api and worker refuse to start without it.
            "WEBHOOK_SIGNING_SECRET": TEST_WEBHOOK_SECRET,
            "PIXELFLOW_API_ADDR": self.url.removeprefix("http://"),
            "PIXELFLOW_API_METRICS_ADDR": "",
            "WORKER_METRICS_ADDR": "",
            "PIXELFLOW_DATA_DIR": str(workdir / "data"),
            "PIXELFLOW_LOG_LEVEL": "info",
            **FAST_TIMINGS,
            **(env or {}),
        }
        self.processes: dict[str, PixelflowProcess] = {}

    # -- processes -------------------------------------------------------------------------

    def spawn(self, name: str, command: str, **env: str) -> PixelflowProcess:
        """Start ``pixelflow <command>`` as ``name`` (unique per deployment), without waiting."""
        assert name not in self.processes, f"process name {name!r} already used"
        # The API authenticates and the worker signs webhooks by the same mode (each user's own
        # secret with api_key, else the shared one): they must agree, so the mode is set on the
        # deployment (self.env) and never per process.
        assert "PIXELFLOW_AUTH" not in env, "set PIXELFLOW_AUTH on the deployment, not a process"
        merged = {**self.env, **env}
        if command not in {"api", "worker"}:
            merged.pop("PIXELFLOW_AUTH", None)  # the other commands do not read it
        process = PixelflowProcess([command], env=merged, log_path=self.workdir / f"{name}.log")
        process.env = self.process_env(merged)
        self.processes[name] = process.start()
        return process

    def process_env(self, merged: Mapping[str, str]) -> dict[str, str]:
        """The environment of a child: ``merged`` over this shell's, minus whatever PixelFlow
        settings the shell carries that ``merged`` does not set."""
        return {
            key: value
            for key, value in {**os.environ, **merged}.items()
            if key in merged or not key.startswith(_INHERITED_PREFIXES)
        }

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``pixelflow <args>`` (an operator command) against this deployment's database."""
        result = subprocess.run(
            pixelflow_command(*args),
            env=self.process_env(self.env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert result.returncode == 0, f"pixelflow {' '.join(args)}: {result.stderr}"
        return result

    def create_key(self, user: str, name: str = "") -> str:
        """A new API key for ``self.user(user)``, made by ``pixelflow keys create``."""
        result = self.cli("keys", "create", "--user", self.user(user), "--name", name)
        key = result.stdout.strip()
        assert key.startswith("pf_") and "\n" not in key, result.stdout
        assert "only time" in result.stderr, result.stderr
        return key

    def start(self, *, api: bool = True, workers: tuple[str, ...] = (), **env: str) -> None:
        """Start the API and the named workers together, then wait until each is ready."""
        if api:
            self.spawn("api", "api", **env)
        for name in workers:
            self.spawn(name, "worker", **env)
        if api:
            self.wait_api()
        for name in workers:
            self.processes[name].wait_log(WORKER_READY, timeout=60)

    def start_worker(self, name: str, **env: str) -> PixelflowProcess:
        process = self.spawn(name, "worker", **env)
        process.wait_log(WORKER_READY, timeout=60)
        return process

    def wait_api(self, name: str = "api") -> None:
        # /readyz: database, queue and storage all reachable (the bucket exists by now).
        self.processes[name].wait_http(f"{self.url}/readyz", timeout=60)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.stop(timeout=15)

    def logs(self, lines: int = 30) -> str:
        """The tail of every process's log, for failure messages."""
        parts = []
        for name, process in self.processes.items():
            state = process.process.poll() if process.process is not None else "not started"
            status = "running" if state is None else f"exited: {state}"
            parts.append(f"--- {name} ({status}) ---\n{process.log_tail(lines)}")
        return "\n".join(parts)

    def job_runs(self, job_id: str) -> dict[str, int]:
        """How many times each worker started ``job_id`` (from the worker's "job <id> picked
        up" log lines: arq's own job lines are silenced, they printed the raw payload)."""
        pattern = re.compile(rf"job {re.escape(job_id)} picked up")
        return {
            name: len(pattern.findall(process.log_text()))
            for name, process in self.processes.items()
            if process.args == ["worker"]
        }

    # -- HTTP ------------------------------------------------------------------------------

    def user(self, name: str) -> str:
        """A user id unique to this run (rate limiter keys contain it, so cleanup finds them)."""
        return f"{self.redis.run_id}-{name}"

    def client(self, user: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"X-User-ID": self.user(user)} if user is not None else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def key_client(self, key: str, *, url: str | None = None) -> httpx.AsyncClient:
        """A client of an ``api_key`` deployment presenting ``key``, to its API or ``url``."""
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.AsyncClient(base_url=url or self.url, headers=headers, timeout=30)

    async def wait_status(
        self,
        client: httpx.AsyncClient,
        job_id: str,
        statuses: set[str],
        *,
        within: float = 60,
        seen: list[str] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until its status is one of ``statuses``."""
        return await self.wait_job(
            client,
            job_id,
            lambda job: job["status"] in statuses,
            f"status in {sorted(statuses)}",
            within=within,
            seen=seen,
        )

    async def wait_job(
        self,
        client: httpx.AsyncClient,
        job_id: str,
        condition: Callable[[dict[str, Any]], bool],
        what: str,
        *,
        within: float = 60,
        seen: list[str] | None = None,
        unexpected: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Poll the job until ``condition`` holds; fail at once if it reaches a status in
        ``unexpected``. Every status observed is appended to ``seen`` when given."""
        deadline = time.monotonic() + within
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = await client.get(f"/v1/jobs/{job_id}")
            assert response.status_code == 200, f"{response.text}\n{self.logs()}"
            job = response.json()
            if seen is not None:
                seen.append(job["status"])
            if condition(job):
                return job
            if job["status"] in unexpected:
                raise AssertionError(f"job {job_id} is {job['status']}: {job}\n{self.logs()}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"job {job_id}: no {what} after {within}s: {job}\n{self.logs()}")

    # -- Redis and PostgreSQL ----------------------------------------------------------------

    async def job_ids(self) -> list[str]:
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            return [row["id"] for row in await conn.fetch("SELECT id FROM jobs")]
        except asyncpg.UndefinedTableError:
            return []  # no process ever migrated this database
        finally:
            await conn.close()

    async def forget_queue(self) -> int:
        """Delete every Redis key of this deployment (queue, arq job and claim keys, rate
        limiter buckets): Redis losing its data, as far as this deployment can tell."""
        ours = [self.redis.run_id, *await self.job_ids()]
        deleted = 0
        async with self.redis.client() as redis:
            async for key in redis.scan_iter(count=1000):
                name = key.decode(errors="replace")
                if any(token in name for token in ours):
                    deleted += await redis.delete(key)
        return deleted

    async def queue_keys(self, job_id: str) -> list[str]:
        """arq's keys for ``job_id`` that exist now (job, in-progress claim)."""
        async with self.redis.client() as redis:
            keys = [f"arq:job:{job_id}", f"arq:in-progress:{job_id}"]
            return [key for key in keys if await redis.exists(key)]


@contextlib.contextmanager
def production_deployment(
    workdir: Path, s3: S3Endpoint, *, redis_url: str | None = None, **env: str
) -> Iterator[Deployment]:
    """A deployment on a fresh database; processes stopped and data removed on exit.

    ``redis_url`` points it at another Redis (a private one a test may restart or flush)."""
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = run_sync(lambda: create_database("pixelflow_e2e"))
    redis = RedisRun(url=redis_url or e2e_redis_url())
    run_sync(redis.check)
    deployment = Deployment(workdir, database_url=database_url, s3=s3, redis=redis, env=env)
    try:
        yield deployment
    finally:
        try:
            deployment.stop_all()
            run_sync(deployment.forget_queue)
        finally:
            run_sync(lambda: drop_database(database_url))
