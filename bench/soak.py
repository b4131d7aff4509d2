"""Soak: jobs flow through a real deployment for a while, with random faults injected.

    .venv/bin/python -m bench.soak --minutes 30 [--out soak-result.json] [--seed N]

The deployment is the fault suite's (``tests/support/faults.py``): ``pixelflow api`` and two
``pixelflow worker``s on a private Redis, the machine's PostgreSQL behind a proxy that can be cut,
and a private SeaweedFS. Jobs are mixed: good and bad inputs (truncated, not an image), both
source types (``s3_presigned`` and ``local_file``), some started by several racing requests, some
canceled while they run. Every 10-40 s one fault from the fault suite's list hits: a worker
SIGKILLed or SIGTERMed (and started again), Redis restarted or flushed, PostgreSQL cut for a few
seconds, S3 stopped for a few seconds.

At the end every job must settle; the invariants are read from the database, Redis and S3
directly. Prints the lost / duplicated / stuck counts and writes them, with the faults injected,
as JSON. Needs PostgreSQL on 127.0.0.1:5432 and ``redis-server`` on PATH, like the test suite.
Not a pass/fail test, but its exit status is 1 when anything was lost, duplicated or stuck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.faults import (
    WORKERS,
    FaultCluster,
    Kind,
    SourceType,
    Submitted,
    fault_cluster,
)

KINDS: list[Kind] = ["good", "good", "good", "good", "truncated", "garbage"]
SOURCES: list[SourceType] = ["s3_presigned", "local_file"]

FAULTS = (
    "worker_sigkill",
    "worker_sigterm",
    "redis_restart",
    "redis_flushall",
    "postgres_cut",
    "s3_stop",
)


async def inject(cluster: FaultCluster, fault: str, rng: random.Random) -> None:
    worker = rng.choice(WORKERS)
    down_for = rng.uniform(1, 6)
    match fault:
        case "worker_sigkill":
            cluster.kill_worker(worker)
            await asyncio.sleep(down_for)
            await asyncio.to_thread(cluster.restart_worker, worker)
        case "worker_sigterm":
            code = await asyncio.to_thread(cluster.terminate_worker, worker)
            if code != 0:
                raise RuntimeError(f"{worker} exited {code} on SIGTERM")
            await asyncio.to_thread(cluster.restart_worker, worker)
        case "redis_restart":
            await cluster.restart_redis(down_for=down_for)
        case "redis_flushall":
            await cluster.flush_redis()
        case "postgres_cut":
            await cluster.cut_database(down_for=down_for)
        case "s3_stop":
            await cluster.stop_storage(down_for=down_for)


async def produce(
    cluster: FaultCluster, jobs: list[Submitted], until: float, rng: random.Random, rate: float
) -> None:
    async with cluster.client() as client:
        while time.monotonic() < until:
            kind, source = rng.choice(KINDS), rng.choice(SOURCES)
            roll = rng.random()
            if roll < 0.1:  # a double start racing
                job = await cluster.submit(client, kind, source, start=False)
                await asyncio.gather(
                    *(cluster.call(client, "POST", f"/v1/jobs/{job.job_id}/start") for _ in "abc")
                )
            else:
                job = await cluster.submit(client, kind, source)
            jobs.append(job)
            if roll > 0.95 and len(jobs) > 3:  # a cancel racing whatever the job is doing
                target = rng.choice(jobs[-4:])
                if target.cancel_status is None:
                    try:
                        answer = await client.post(f"/v1/jobs/{target.job_id}/cancel")
                    except Exception:
                        answer = None
                    if answer is not None and answer.status_code in {202, 409}:
                        target.cancel_status = answer.status_code
            await asyncio.sleep(rng.expovariate(rate))


async def faults(
    cluster: FaultCluster, until: float, rng: random.Random, injected: list[dict[str, Any]]
) -> None:
    started = time.monotonic()
    while True:
        await asyncio.sleep(rng.uniform(10, 40))
        if time.monotonic() > until:
            return
        fault = rng.choice(FAULTS)
        at = round(time.monotonic() - started, 1)
        await inject(cluster, fault, rng)
        injected.append({"fault": fault, "at_s": at})
        print(f"[{at:7.1f} s] {fault}", flush=True)


async def soak(minutes: float, seed: int, rate: float, workdir: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    jobs: list[Submitted] = []
    injected: list[dict[str, Any]] = []
    began = time.monotonic()
    with fault_cluster(workdir) as cluster:
        cluster.watch.start()
        until = time.monotonic() + minutes * 60
        await asyncio.gather(
            produce(cluster, jobs, until, rng, rate), faults(cluster, until, rng, injected)
        )
        report = await cluster.check(jobs, within=300)
        await cluster.watch.stop()
        statuses = Counter(status for status, _ in cluster.watch.last.values())
    return {
        "minutes": minutes,
        "seed": seed,
        "wall_minutes": round((time.monotonic() - began) / 60, 1),
        **report.summary(),
        "statuses": dict(statuses),
        "faults": dict(Counter(item["fault"] for item in injected)),
        "fault_log": injected,
        "details": {"lost": report.lost, "duplicated": report.duplicated, "stuck": report.stuck},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--rate", type=float, default=0.7, help="jobs submitted per second")
    parser.add_argument("--out", type=Path, default=Path("soak-result.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pixelflow-soak-") as tmp:
        result = asyncio.run(soak(args.minutes, args.seed, args.rate, Path(tmp)))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"soak {args.minutes:g} min, seed {args.seed}: {result['jobs']} jobs, "
        f"faults {result['faults']}\n"
        f"lost {result['lost']}  duplicated {result['duplicated']}  stuck {result['stuck']}  "
        f"other violations {len(result['violations'])}\nresult written to {args.out}"
    )
    bad = result["lost"] or result["duplicated"] or result["stuck"] or result["violations"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
