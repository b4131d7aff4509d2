"""Fault injection: a real ``pixelflow api`` and two ``pixelflow worker``s on PostgreSQL, Redis
and SeaweedFS, with jobs flowing while a fault hits. After each scenario the invariants are read
from the database, Redis and S3 directly (``FaultCluster.check``): every job terminal within a
bound with the outcome its input calls for, no status moved backwards, one usage row per
succeeded job, outputs exactly for the emitted steps, no worker died, every ``/readyz`` 200.

One cluster serves the module (starting it takes a few seconds); each scenario leaves it healed.
Redis and S3 are private to the cluster, and PostgreSQL is reached through a proxy the test cuts:
nothing shared with other test runs is ever stopped or flushed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.support.faults import WORKERS, FaultCluster, Report, Submitted, fault_cluster

BATCH = 8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    with fault_cluster(tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.fixture
def marks(cluster: FaultCluster) -> Iterator[dict[str, int]]:
    """Where each process's log stood when the scenario began; afterwards, whatever the
    scenario left broken (it failed halfway) is healed for the next one."""
    yield cluster.log_marks()
    cluster.heal()


async def run_batch(cluster: FaultCluster, client: httpx.AsyncClient, seed: int) -> list[Submitted]:
    cluster.watch.start()
    jobs = await cluster.submit_batch(client, BATCH, seed=seed)
    await cluster.wait_processing()
    return jobs


async def finish(
    cluster: FaultCluster,
    jobs: list[Submitted],
    marks: dict[str, int],
    *,
    outage: str | None = None,
) -> Report:
    """Check the invariants; and that the processes logged the scenario quietly: no traceback,
    and at most one line when ``outage`` went away and one when it was back, per process."""
    try:
        report = await cluster.check(jobs)
    finally:
        await cluster.watch.stop()
    assert report.ok, f"{report.summary()}\n{report}\n{cluster.deployment.logs(40)}"
    for name, text in cluster.logs_since(marks).items():
        assert "Traceback" not in text, f"{name}:\n{text[-4000:]}"
        if outage is not None:
            assert text.count(f"{outage} unavailable: retrying") <= 1, f"{name}:\n{text[-4000:]}"
            assert text.count(f"{outage} reachable again") <= 1, f"{name}:\n{text[-4000:]}"
    return report


async def test_worker_sigkill_mid_job(cluster: FaultCluster, marks: dict[str, int]) -> None:
    async with cluster.client() as client:
        jobs = await run_batch(cluster, client, seed=1)
        cluster.kill_worker("worker-a")
        await asyncio.sleep(1)
        cluster.restart_worker("worker-a")
        await finish(cluster, jobs, marks)


async def test_worker_sigterm_mid_job_exits_cleanly(
    cluster: FaultCluster, marks: dict[str, int]
) -> None:
    async with cluster.client() as client:
        jobs = await run_batch(cluster, client, seed=2)
        process = cluster.worker("worker-b")
        await _until_busy(cluster, "worker-b")
        assert cluster.terminate_worker("worker-b") == 0, process.log_tail()
        assert "worker stopped" in process.log_text(), process.log_tail()
        # With no grace (the cluster's setting), the jobs it held went back to the queue at
        # once rather than to their leases' expiry.
        assert "handed back to the queue at shutdown" in process.log_text(), process.log_tail()
        cluster.restart_worker("worker-b")
        await finish(cluster, jobs, marks)


async def test_redis_restart(cluster: FaultCluster, marks: dict[str, int]) -> None:
    async with cluster.client() as client:
        jobs = await run_batch(cluster, client, seed=3)
        await cluster.restart_redis(down_for=3)
        await finish(cluster, jobs, marks, outage="queue")
    logs = cluster.logs_since(marks)
    for name in WORKERS:
        # The workers noticed (and said so once): the outage was real and they rode it out.
        log = logs[cluster.worker_key(name)]
        assert log.count("queue unavailable: retrying") == 1, log[-3000:]


async def test_redis_flushall(cluster: FaultCluster, marks: dict[str, int]) -> None:
    async with cluster.client() as client:
        jobs = await run_batch(cluster, client, seed=4)
        await cluster.flush_redis()
        await finish(cluster, jobs, marks)


async def test_postgres_outage(cluster: FaultCluster, marks: dict[str, int]) -> None:
    async with cluster.client() as client:
        jobs = await run_batch(cluster, client, seed=5)
        cluster.pg_proxy.cut()
        await asyncio.sleep(1.5)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unavailable"
        # The worker says so too, on its metrics port (its watch probes every 2 s).
        await _until_worker_reports(cluster, "worker-a", database_up=False)
        cluster.pg_proxy.restore()
        await _until_worker_reports(cluster, "worker-a", database_up=True)
        await finish(cluster, jobs, marks, outage="database")


async def _until_worker_reports(cluster: FaultCluster, name: str, *, database_up: bool) -> None:
    """Until the worker's /readyz and pixelflow_dependency_up agree the database is (not) up."""
    readyz = cluster.worker_readyz(name)
    metrics = readyz.removesuffix("/readyz") + "/metrics"
    gauge = f'pixelflow_dependency_up{{dependency="database"}} {1.0 if database_up else 0.0}'
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(100):
            ready, scraped = await http.get(readyz), await http.get(metrics)
            checks = ready.json().get("checks") or {}
            if gauge in scraped.text and (checks.get("database") == "ok") is database_up:
                assert ready.status_code == (200 if database_up else 503), ready.text
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never reported database up={database_up}: {ready.text}")


async def test_s3_stop_and_start(cluster: FaultCluster, marks: dict[str, int]) -> None:
    async with cluster.client() as client:
        jobs = await run_batch(cluster, client, seed=6)
        await cluster.stop_storage(down_for=4)
        await finish(cluster, jobs, marks, outage="storage")


async def test_double_start_races_enqueue_once(
    cluster: FaultCluster, marks: dict[str, int]
) -> None:
    async with cluster.client() as client:
        cluster.watch.start()
        jobs = [await cluster.submit(client, start=False) for _ in range(4)]
        for job in jobs:
            answers = await asyncio.gather(
                *(client.post(f"/v1/jobs/{job.job_id}/start") for _ in range(5))
            )
            states = sorted(answer.json()["state"] for answer in answers)
            assert all(answer.status_code == 202 for answer in answers), answers
            assert states == ["already_started"] * 4 + ["enqueued"], states
        await finish(cluster, jobs, marks)
    runs = [cluster.deployment.job_runs(job.job_id) for job in jobs]
    assert all(sum(r.values()) == 1 for r in runs), runs


async def test_cancel_racing_a_finishing_attempt(
    cluster: FaultCluster, marks: dict[str, int]
) -> None:
    """Cancels aimed at jobs that are about to finish: each job ends either canceled (202, no
    outputs, no usage) or finished (409), never both."""
    async with cluster.client() as client:
        cluster.watch.start()
        jobs = [await cluster.submit(client) for _ in range(6)]
        for index, job in enumerate(jobs):
            await _wait_status(cluster, job.job_id, {"processing", "succeeded"})
            await asyncio.sleep(0.1 * index)  # from mid-render to after the finish
            answer = await client.post(f"/v1/jobs/{job.job_id}/cancel")
            assert answer.status_code in {202, 409}, answer.text
            job.cancel_status = answer.status_code
        report = await finish(cluster, jobs, marks)
    assert report.jobs == len(jobs)


async def _wait_status(cluster: FaultCluster, job_id: str, statuses: set[str]) -> None:
    for _ in range(300):
        await cluster.watch.poll()
        status = cluster.watch.last.get(job_id, ("", 0))[0]
        if status in statuses:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {statuses}\n{cluster.deployment.logs()}")


async def test_a_worker_started_while_redis_is_down_waits_for_it(
    cluster: FaultCluster, marks: dict[str, int]
) -> None:
    """Start-up during an outage: the worker waits (one line), answers 503 on its /readyz
    meanwhile, exits cleanly on SIGTERM, and starts by itself once Redis is back. A job started
    meanwhile answers ``pending_reconcile`` and runs once the queue is back."""
    async with cluster.client() as client:
        cluster.watch.start()
        job = await cluster.submit(client, start=False)
        cluster.redis.stop()
        try:
            answer = await client.post(f"/v1/jobs/{job.job_id}/start")
            assert answer.status_code == 202, answer.text
            assert answer.json()["state"] == "pending_reconcile", answer.text
            assert answer.json()["status"] == "queued", answer.text

            waiting = cluster.spawn_extra_worker("late")
            leaving = cluster.spawn_extra_worker("leaving")
            for process in (waiting, leaving):
                process.wait_log("(queue_unavailable): waiting for it before starting")
            async with httpx.AsyncClient(timeout=5) as http:
                ready = await http.get(cluster.worker_readyz("late"))
            assert ready.status_code == 503, ready.text
            assert leaving.stop(timeout=20) == 0, leaving.log_tail()
            await asyncio.sleep(2)
            assert waiting.process is not None and waiting.process.poll() is None
            assert waiting.log_text().count("waiting for it before starting") == 1
        finally:
            cluster.redis.start()
        cluster.wait_worker_ready("late")
        assert "every dependency is reachable: starting" in waiting.log_text()
        await finish(cluster, [job], marks, outage="queue")
    assert waiting.stop(timeout=40) == 0, waiting.log_tail()


async def _until_busy(cluster: FaultCluster, name: str) -> None:
    """Until the worker reports a job in flight (``pixelflow_worker_active_jobs`` > 0)."""
    metrics = cluster.worker_readyz(name).removesuffix("/readyz") + "/metrics"
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(300):
            for line in (await http.get(metrics)).text.splitlines():
                if line.startswith("pixelflow_worker_active_jobs ") and float(line.split()[1]) > 0:
                    return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{name} never had a job in flight")
