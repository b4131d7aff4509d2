"""The production deployment as real processes: ``pixelflow api`` and ``pixelflow worker`` on
PostgreSQL, Redis (arq) and S3 (SeaweedFS, which checks SigV4 signatures).

One API with two workers is shared by the tests that leave it as they found it; tests that kill
or pause processes, lose Redis data or stop S3 get a deployment (and database) of their own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import httpx
import pytest

from pixelflow.adapters.store.schema import available
from tests.support.deployment import WORKER_READY, Deployment, production_deployment
from tests.support.jobs import DONE_WHEN_OUTPUTS, DONE_WHEN_PIPELINE, decode, loader_format
from tests.support.postgres import create_database, drop_database, run_sync
from tests.support.processes import free_port, pixelflow_command
from tests.support.seaweed import SeaweedServer, running_seaweed

# fixture → (pipeline, {step_id: (width, height, format, libvips loader, content type)})
Expected = dict[str, tuple[int, int, str, str, str]]
JOBS: dict[str, tuple[list[dict[str, Any]], Expected]] = {
    "photo-1080p.jpg": (
        [{"id": "small", "action": "resize", "width": 480, "format": "jpeg"}],
        {"small": (480, 360, "jpeg", "jpeg", "image/jpeg")},
    ),
    "rocket.jpg": (
        [{"id": "square", "action": "crop", "width": 200, "height": 200, "gravity": "smart",
          "format": "webp"}],
        {"square": (200, 200, "webp", "webp", "image/webp")},
    ),
    "chelsea.png": (
        [{"id": "turned", "action": "rotate", "angle": 90, "format": "png"}],
        {"turned": (300, 451, "png", "png", "image/png")},
    ),
    "coffee.webp": (
        [{"id": "half", "action": "resize", "width": 300, "format": "avif"}],
        {"half": (300, 200, "avif", "heif", "image/avif")},
    ),
    "astronaut-orientation-6.jpg": (
        [{"id": "upright", "action": "resize", "width": 256, "format": "png"}],
        {"upright": (256, 256, "png", "png", "image/png")},
    ),
    "hubble.tiff": (
        [{"id": "half", "action": "resize", "width": 500, "format": "tiff"}],
        {"half": (500, 436, "tiff", "tiff", "image/tiff")},
    ),
    # The acceptance job: a resize, a full-size watermark, a smart crop, a chained resize.
    "photo-12mp.jpg": (DONE_WHEN_PIPELINE, DONE_WHEN_OUTPUTS),
}  # fmt: skip

QUICK = [{"id": "thumb", "action": "resize", "width": 160, "format": "webp"}]
# About a second of libvips work: long enough for concurrent requests to race its start.
STEADY = [{"id": "soft", "action": "blur", "sigma": 8, "format": "png"}]
# Several seconds on photo-12mp.jpg with one job in libvips at once: a worker can be killed
# while it is busy with it.
SLOW = [{"id": f"blur{i}", "action": "blur", "sigma": 20, "format": "png"} for i in range(4)]
# Larger than every sample image; set explicitly so an upload one byte over it stays small.
MAX_SOURCE_BYTES = 16 << 20


@pytest.fixture(scope="module")
def shared(
    seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """An API and two workers (one job in libvips each: two cores), for the tests that do not
    disturb them."""
    with production_deployment(
        tmp_path_factory.mktemp("production"),
        seaweed.endpoint,
        PIXELFLOW_RATE_LIMIT_CAPACITY="1000",
        PIXELFLOW_MAX_SOURCE_BYTES=str(MAX_SOURCE_BYTES),
        WORKER_CONCURRENCY="2",
        WORKER_MAX_ACTIVE_JOBS="1",
    ) as deployment:
        deployment.start(workers=("worker-a", "worker-b"))
        yield deployment


# -- helpers -------------------------------------------------------------------------------------


async def create(
    deployment: Deployment, client: httpx.AsyncClient, pipeline: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await client.post(
        "/v1/jobs", json={"source_type": "s3_presigned", "pipeline": pipeline}
    )
    assert response.status_code == 202, f"{response.text}\n{deployment.logs()}"
    created: dict[str, Any] = response.json()
    return created


async def upload(deployment: Deployment, created: dict[str, Any], data: bytes) -> None:
    """A plain HTTP PUT of the bytes to the presigned URL, as curl would send it."""
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.put(created["upload"]["presigned_put_url"], content=data)
    assert response.status_code == 200, f"upload refused: {response.text}\n{deployment.logs()}"


async def start(deployment: Deployment, client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.post(f"/v1/jobs/{job_id}/start")
    assert response.status_code == 202, f"{response.text}\n{deployment.logs()}"
    started: dict[str, Any] = response.json()
    return started


async def submit(
    deployment: Deployment, client: httpx.AsyncClient, data: bytes, pipeline: list[dict[str, Any]]
) -> str:
    """Create, upload and start a job; its id."""
    created = await create(deployment, client, pipeline)
    await upload(deployment, created, data)
    await start(deployment, client, created["job_id"])
    job_id: str = created["job_id"]
    return job_id


async def fetch_output(
    deployment: Deployment, client: httpx.AsyncClient, job_id: str, step_id: str
) -> httpx.Response:
    """The outputs route redirects to a presigned S3 GET; follow it by hand."""
    redirect = await client.get(f"/v1/jobs/{job_id}/outputs/{step_id}")
    assert redirect.status_code == 307, f"{redirect.text}\n{deployment.logs()}"
    location = redirect.headers["location"]
    assert location.startswith(f"{deployment.s3.endpoint_url}/{deployment.bucket}/outputs/"), (
        location
    )
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(location)
    assert response.status_code == 200, f"presigned GET refused: {response.text}"
    return response


async def check_outputs(
    deployment: Deployment, client: httpx.AsyncClient, job: dict[str, Any], expected: Expected
) -> None:
    assert job["status"] == "succeeded", f"{job}\n{deployment.logs()}"
    assert {output["step_id"] for output in job["outputs"]} == set(expected), job["outputs"]
    for output in job["outputs"]:
        width, height, fmt, loader, content_type = expected[output["step_id"]]
        assert (output["width"], output["height"], output["format"], output["content_type"]) == (
            width,
            height,
            fmt,
            content_type,
        ), output
        response = await fetch_output(deployment, client, job["id"], output["step_id"])
        # What S3 stored with the object, not what the job record says.
        assert response.headers["content-type"] == content_type, output
        assert len(response.content) == output["bytes"], output
        image = decode(response.content)
        assert (image.width, image.height, loader_format(image)) == (width, height, loader), output


async def usage_rows(database_url: str, job_ids: list[str]) -> dict[str, list[asyncpg.Record]]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await conn.fetch("SELECT * FROM usage_logs WHERE job_id = ANY($1)", job_ids)
    finally:
        await conn.close()
    found: dict[str, list[asyncpg.Record]] = {job_id: [] for job_id in job_ids}
    for row in rows:
        found[row["job_id"]].append(row)
    return found


# -- the shared deployment -----------------------------------------------------------------------


async def test_two_workers_process_every_job_once(shared: Deployment, fixtures_dir: Path) -> None:
    """Uploaded through real SigV4 URLs and shared by two workers, every job succeeds once,
    with its outputs in S3 (right dimensions, format and Content-Type) and one usage row."""
    async with shared.client("many") as client:
        created = {name: await create(shared, client, JOBS[name][0]) for name in JOBS}
        for name, job in created.items():
            await upload(shared, job, (fixtures_dir / name).read_bytes())
        # Started together, so both workers find jobs waiting.
        await asyncio.gather(*(start(shared, client, job["job_id"]) for job in created.values()))

        for name, job in created.items():
            done = await shared.wait_status(
                client, job["job_id"], {"succeeded", "failed", "canceled"}, within=120
            )
            await check_outputs(shared, client, done, JOBS[name][1])
            assert done["attempts"] == 1, f"{name}: {done}\n{shared.logs()}"
            assert done["error"] is None, done
            pixels = sum(o["width"] * o["height"] for o in done["outputs"])
            assert done["usage"]["pixels_processed"] == pixels, done["usage"]
            assert done["usage"]["bytes_in"] == (fixtures_dir / name).stat().st_size

    ids = [job["job_id"] for job in created.values()]
    rows = await usage_rows(shared.database_url, ids)
    assert {job_id: len(found) for job_id, found in rows.items()} == dict.fromkeys(ids, 1)

    # Each job was started by exactly one worker, once.
    runs = {job_id: shared.job_runs(job_id) for job_id in ids}
    for job_id, per_worker in runs.items():
        assert sum(per_worker.values()) == 1, f"{job_id}: {per_worker}\n{shared.logs()}"
    # Which worker took which job depends on timing: report it rather than assert it.
    share = {
        worker: sum(per_worker[worker] for per_worker in runs.values())
        for worker in ("worker-a", "worker-b")
    }
    print(f"jobs per worker: {share}")


async def test_original_flow_in_header_mode(shared: Deployment, fixtures_dir: Path) -> None:
    """A client of the original PixelFlow: its request fields and response shapes, and
    X-User-ID as the owner (another user gets 404; no, or a bad, header 401)."""
    async with shared.client("original") as client:
        # The original's request: every field present, an empty webhook_url and object_key.
        created = await client.post(
            "/v1/jobs",
            json={
                "source_type": "s3_presigned",
                "object_key": "",
                "webhook_url": "",
                "pipeline": [{"id": "thumb", "action": "resize", "width": 320, "format": "jpeg"}],
            },
        )
        assert created.status_code == 202, created.text
        body = created.json()
        assert {"job_id", "status", "upload", "start_url", "job_url"} <= set(body), body
        job_id = body["job_id"]
        assert body["status"] == "created"
        assert body["start_url"] == f"/v1/jobs/{job_id}/start"
        assert body["job_url"] == f"/v1/jobs/{job_id}"
        upload_info = body["upload"]
        assert {"object_key", "presigned_put_url", "presigned_url_state"} <= set(upload_info)
        assert upload_info["object_key"] == f"uploads/{job_id}/source"
        assert upload_info["presigned_url_state"] == "ready"
        assert upload_info["presigned_put_url"].startswith(
            f"{shared.s3.endpoint_url}/{shared.bucket}/uploads/{job_id}/source?"
        )
        assert "X-Amz-Signature=" in upload_info["presigned_put_url"]

        await upload(shared, body, (fixtures_dir / "rocket.jpg").read_bytes())
        started = await client.post(body["start_url"])
        assert started.status_code == 202, started.text
        start_body = started.json()
        assert {"job_id", "status", "queue", "task_id", "state", "enqueued_at"} <= set(start_body)
        assert start_body["job_id"] == start_body["task_id"] == job_id
        assert start_body["status"] == "queued"
        assert start_body["queue"] == shared.redis.queue_name
        assert start_body["state"] == "enqueued"
        assert start_body["enqueued_at"]

        job = await shared.wait_status(client, job_id, {"succeeded", "failed"})
        await check_outputs(
            shared, client, job, {"thumb": (320, 214, "jpeg", "jpeg", "image/jpeg")}
        )
        assert job["user_id"] == shared.user("original")

    # Another user cannot see it: 404 as for a missing job.
    async with shared.client("mallory") as other:
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/outputs/thumb"):
            response = await other.get(path)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["code"] == "job_not_found", response.text
        response = await other.post(f"/v1/jobs/{job_id}/start")
        assert response.status_code == 404, response.text

    # No header, or one that is blank, malformed or repeated, is no identity at all (the
    # original let such requests into a shared "anonymous" tenant).
    user = shared.user("original")
    refused: list[list[tuple[str, str]]] = [
        [],
        [("X-User-ID", "")],
        [("X-User-ID", f"{user} x")],
        [("X-User-ID", user), ("X-User-ID", user)],
    ]
    async with httpx.AsyncClient(base_url=shared.url, timeout=30) as anonymous:
        for headers in refused:
            response = await anonymous.get(f"/v1/jobs/{job_id}", headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["code"] == "unauthorized", response.text


async def test_concurrent_starts_enqueue_once(shared: Deployment, fixtures_dir: Path) -> None:
    """Five starts at once: one enqueues, four answer already_started; the job runs once."""
    async with shared.client("racer") as client:
        created = await create(shared, client, STEADY)
        await upload(shared, created, (fixtures_dir / "photo-1080p.jpg").read_bytes())
        job_id = created["job_id"]

        # Five connections opened beforehand, so the five starts arrive together.
        await asyncio.gather(*(client.get("/healthz") for _ in range(5)))
        responses = await asyncio.gather(
            *(client.post(f"/v1/jobs/{job_id}/start") for _ in range(5))
        )
        assert [r.status_code for r in responses] == [202] * 5, [r.text for r in responses]
        states = sorted(r.json()["state"] for r in responses)
        assert states == ["already_started"] * 4 + ["enqueued"], states
        assert {r.json()["task_id"] for r in responses} == {job_id}

        job = await shared.wait_status(client, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded", f"{job}\n{shared.logs()}"
    assert job["attempts"] == 1, job
    runs = shared.job_runs(job_id)
    assert sum(runs.values()) == 1, f"{runs}\n{shared.logs()}"


async def test_missing_or_tampered_upload_is_source_missing(
    shared: Deployment, fixtures_dir: Path
) -> None:
    """Start before the upload is 409 source_missing; S3 refuses a presigned URL whose
    signature or key was altered (403), so the job stays without a source."""
    data = (fixtures_dir / "rocket.jpg").read_bytes()
    async with shared.client("tamper") as client:
        created = await create(shared, client, QUICK)
        job_id = created["job_id"]
        url: str = created["upload"]["presigned_put_url"]

        # Nothing uploaded yet.
        response = await client.post(f"/v1/jobs/{job_id}/start")
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "source_missing", response.text

        # Edited as text, so nothing but the tampered part changes.
        signature = url.rsplit("X-Amz-Signature=", 1)[1].split("&")[0]
        flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        forged_signature = url.replace(signature, flipped)
        other_key = url.replace(f"/{job_id}/source?", f"/{job_id}/other?")
        other_job = url.replace(f"/{job_id}/", f"/{job_id[::-1]}/")
        assert len({url, forged_signature, other_key, other_job}) == 4
        async with httpx.AsyncClient(timeout=30) as http:
            for forged in (forged_signature, other_key, other_job):
                refused = await http.put(forged, content=data)
                assert refused.status_code == 403, (forged, refused.status_code)

        response = await client.post(f"/v1/jobs/{job_id}/start")
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "source_missing", response.text
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        assert job["status"] == "created", job

        # The untouched URL still works, and the job then runs.
        await upload(shared, created, data)
        await start(shared, client, job_id)
        job = await shared.wait_status(client, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded", f"{job}\n{shared.logs()}"


async def test_presigned_post_upload_is_bounded_by_s3(
    shared: Deployment, fixtures_dir: Path
) -> None:
    """``upload.presigned_post``: S3 itself refuses a file one byte over the limit (start then
    finds no source) and a form whose policy was edited; within the limit the job runs."""
    data = (fixtures_dir / "rocket.jpg").read_bytes()
    async with shared.client("bounded") as client:
        created = await create(shared, client, QUICK)
        job_id = created["job_id"]
        post = created["upload"]["presigned_post"]
        assert post["url"] == f"{shared.s3.endpoint_url}/{shared.bucket}"
        assert post["fields"]["key"] == f"uploads/{job_id}/source"

        async def send(content: bytes, **changes: str) -> httpx.Response:
            async with httpx.AsyncClient(timeout=60) as http:
                fields = {**post["fields"], **changes}
                return await http.post(post["url"], data=fields, files={"file": ("f", content)})

        too_large = await send(b"\0" * (MAX_SOURCE_BYTES + 1))
        assert too_large.status_code == 400, too_large.text
        assert "EntityTooLarge" in too_large.text, too_large.text
        response = await client.post(f"/v1/jobs/{job_id}/start")
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "source_missing", response.text

        # Remove the size condition from the policy: the signature no longer matches it.
        policy = json.loads(base64.b64decode(post["fields"]["policy"]))
        policy["conditions"] = [c for c in policy["conditions"] if isinstance(c, dict)]
        unbounded = base64.b64encode(json.dumps(policy).encode()).decode()
        forged = await send(data, policy=unbounded)
        assert forged.status_code == 403, forged.text
        response = await client.post(f"/v1/jobs/{job_id}/start")
        assert response.status_code == 409, response.text

        uploaded = await send(data)
        assert uploaded.status_code == 204, uploaded.text
        await start(shared, client, job_id)
        job = await shared.wait_status(client, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded", f"{job}\n{shared.logs()}"


# -- deployments of their own --------------------------------------------------------------------


async def test_a_killed_workers_job_is_recovered(
    seaweed: SeaweedServer, tmp_path: Path, fixtures_dir: Path
) -> None:
    """SIGKILL mid-job: the next worker's reconciler sees the lease expire, releases arq's claim
    and the job runs again at once: succeeded on attempt 2, counted once."""
    with production_deployment(
        tmp_path, seaweed.endpoint, WORKER_CONCURRENCY="1", WORKER_MAX_ACTIVE_JOBS="1"
    ) as deployment:
        deployment.start(workers=("worker-a",))
        async with deployment.client("crash") as client:
            data = (fixtures_dir / "photo-12mp.jpg").read_bytes()
            job_id = await submit(deployment, client, data, SLOW)
            await deployment.wait_job(
                client,
                job_id,
                lambda job: job["status"] == "processing",
                "processing",
                within=30,
                unexpected=frozenset({"succeeded", "failed"}),
            )
            deployment.processes["worker-a"].kill()

            job = (await client.get(f"/v1/jobs/{job_id}")).json()
            assert job["status"] == "processing", (
                f"the job was no longer processing when its worker was killed: {job}"
            )
            assert job["attempts"] == 1, job
            # arq's claim on the job outlives the worker (its TTL is the job timeout + 40 s);
            # only the reconciler's release lets the next worker run it now.
            assert await deployment.queue_keys(job_id) == [
                f"arq:job:{job_id}",
                f"arq:in-progress:{job_id}",
            ]

            deployment.start_worker("worker-b")
            job = await deployment.wait_status(client, job_id, {"succeeded", "failed"}, within=45)
        assert job["status"] == "succeeded", f"{job}\n{deployment.logs()}"
        assert job["attempts"] == 2, f"{job}\n{deployment.logs()}"
        assert len(job["outputs"]) == len(SLOW), job["outputs"]
        assert deployment.job_runs(job_id) == {"worker-a": 1, "worker-b": 1}, deployment.logs()
        log_b = deployment.processes["worker-b"].log_text()
        assert "recovered=1" in log_b, deployment.logs()
        rows = await usage_rows(deployment.database_url, [job_id])
        assert len(rows[job_id]) == 1, rows


async def test_jobs_lost_from_redis_are_reenqueued(
    seaweed: SeaweedServer, tmp_path: Path, fixtures_dir: Path
) -> None:
    """Queued jobs whose Redis data is lost are re-enqueued by the reconciler from PostgreSQL.

    Redis DB 13 may be shared with other runs, so rather than FLUSHDB the test deletes every key
    of this deployment (queue, arq job keys, rate limiter buckets): the same loss, as far as
    this deployment can tell."""
    with production_deployment(tmp_path, seaweed.endpoint) as deployment:
        deployment.start()  # the API only: nothing consumes the queue yet
        async with deployment.client("flush") as client:
            data = (fixtures_dir / "rocket.jpg").read_bytes()
            ids = [await submit(deployment, client, data, QUICK) for _ in range(2)]
            for job_id in ids:
                assert await deployment.queue_keys(job_id) == [f"arq:job:{job_id}"]

            assert await deployment.forget_queue() > 0
            for job_id in ids:
                assert await deployment.queue_keys(job_id) == []
                job = (await client.get(f"/v1/jobs/{job_id}")).json()
                assert job["status"] == "queued", job

            # The reconciler re-enqueues queued jobs the queue does not know once they are
            # older than its grace period (5 s with these timings).
            deployment.start_worker("worker")
            jobs = [
                await deployment.wait_status(client, job_id, {"succeeded", "failed"}, within=45)
                for job_id in ids
            ]
        for job in jobs:
            assert job["status"] == "succeeded", f"{job}\n{deployment.logs()}"
            assert job["attempts"] == 1, job
        log = deployment.processes["worker"].log_text()
        # Possibly over two passes, as the jobs crossed the grace period a moment apart.
        reenqueued = sum(int(count) for count in re.findall(r"reenqueued=(\d+)", log))
        assert reenqueued == 2, deployment.logs()


async def test_storage_outage(tmp_path: Path, fixtures_dir: Path) -> None:
    """S3 down: start answers 503 (never 409) and readiness names storage; a job the worker
    cannot fetch goes back to the queue (never failed) and succeeds once S3 is back."""
    data = (fixtures_dir / "rocket.jpg").read_bytes()
    with (
        running_seaweed(tmp_path / "s3") as s3,
        production_deployment(
            tmp_path / "deployment", s3.endpoint, WORKER_MAX_ATTEMPTS="20"
        ) as deployment,
    ):
        deployment.start(workers=("worker",))
        async with deployment.client("outage") as client:
            waiting = await create(deployment, client, QUICK)
            await upload(deployment, waiting, data)
            # Paused, the worker cannot take the next job before S3 is gone.
            deployment.processes["worker"].pause()
            running = await submit(deployment, client, data, QUICK)
            s3.stop()

            response = await client.post(f"/v1/jobs/{waiting['job_id']}/start")
            assert response.status_code == 503, response.text
            assert response.json() == {
                "error": "object storage is unavailable",
                "code": "storage_unavailable",
            }
            ready = await client.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"] == {
                "database": "ok",
                "queue": "ok",
                "storage": "unavailable",
            }
            assert "storage" in ready.json()["error"], ready.text
            job = (await client.get(f"/v1/jobs/{waiting['job_id']}")).json()
            assert job["status"] == "created", job

            # A process started while S3 is down waits for it (one log line), and keeps
            # waiting: an outage at start-up is ridden out like any other.
            worker = deployment.spawn("worker-no-s3", "worker")
            api = deployment.spawn(
                "api-no-s3", "api", PIXELFLOW_API_ADDR=f"127.0.0.1:{free_port()}"
            )
            for process in (worker, api):
                process.wait_log("(storage_unavailable): waiting for it before starting")
            await asyncio.sleep(3)
            for process in (worker, api):
                assert process.process is not None and process.process.poll() is None
                assert process.log_text().count("waiting for it before starting") == 1, (
                    process.log_tail()
                )

            deployment.processes["worker"].resume()
            seen: list[str] = []
            retried = await deployment.wait_job(
                client,
                running,
                lambda job: job["status"] == "queued" and job["attempts"] >= 1,
                "retry after a failed attempt",
                within=30,
                seen=seen,
                unexpected=frozenset({"failed", "succeeded"}),
            )
            assert retried["error"]["code"] == "storage_unavailable", retried

            s3.start()
            job = await deployment.wait_status(
                client, running, {"succeeded", "failed"}, within=60, seen=seen
            )
            # The processes that waited start by themselves once S3 is back.
            worker.wait_log(WORKER_READY)
            api.wait_http(f"http://{api.env['PIXELFLOW_API_ADDR']}/readyz")
            assert job["status"] == "succeeded", f"{job}\n{deployment.logs()}"
            assert "failed" not in seen, seen
            assert job["attempts"] >= 2, job
            assert job["error"] is None, job
            await check_outputs(
                deployment, client, job, {"thumb": (160, 107, "webp", "webp", "image/webp")}
            )

            # Back up, the start that was refused goes through.
            await start(deployment, client, waiting["job_id"])
            job = await deployment.wait_status(client, waiting["job_id"], {"succeeded", "failed"})
            assert job["status"] == "succeeded", f"{job}\n{deployment.logs()}"


# -- migrations ----------------------------------------------------------------------------------


def test_migrate_applies_each_migration_once() -> None:
    """`pixelflow migrate` needs only the database URL, applies each migration once, and exits
    1 with database_unavailable when PostgreSQL cannot be reached."""
    database_url = run_sync(lambda: create_database("pixelflow_e2e"))
    try:
        env = {"PIXELFLOW_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
        outputs = []
        for _ in range(2):
            result = subprocess.run(
                pixelflow_command("migrate"), env=env, capture_output=True, timeout=60
            )
            assert result.returncode == 0, result.stderr.decode()
            outputs.append(result.stdout.decode().strip())
        versions = [migration.version for migration in available()]
        assert outputs == [
            f"applied {len(versions)} migration(s): {', '.join(versions)}",
            "applied 0 migration(s)",
        ]
    finally:
        run_sync(lambda: drop_database(database_url))

    unreachable = {"PIXELFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    result = subprocess.run(
        pixelflow_command("migrate"), env=unreachable, capture_output=True, timeout=60
    )
    assert result.returncode == 1, result.stderr.decode()
    assert b"(database_unavailable)" in result.stderr, result.stderr.decode()


async def test_api_processes_starting_together_migrate_once(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """Two API processes on a fresh database: both start (the advisory lock serialises their
    migrations) and the schema is migrated once."""
    with production_deployment(tmp_path, seaweed.endpoint) as deployment:
        other = f"127.0.0.1:{free_port()}"
        first = deployment.spawn("api", "api")
        second = deployment.spawn("api-2", "api", PIXELFLOW_API_ADDR=other)
        first.wait_http(f"{deployment.url}/readyz")
        second.wait_http(f"http://{other}/readyz")
        conn = await asyncpg.connect(deployment.database_url, timeout=10)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations")
        finally:
            await conn.close()
        assert [row["version"] for row in rows] == [m.version for m in available()], (
            deployment.logs()
        )
