"""API keys, cross-tenant isolation and usage through the real processes: ``pixelflow api`` in
its default mode (``api_key``) and a ``pixelflow worker`` on PostgreSQL, Redis and SeaweedFS,
with keys made, listed and revoked by ``pixelflow keys`` subprocesses."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.deployment import Deployment, production_deployment
from tests.support.processes import free_port, pixelflow_command
from tests.support.seaweed import SeaweedServer

QUICK = [{"id": "thumb", "action": "resize", "width": 160, "format": "webp"}]
USAGE_FIELDS = ("pixels_processed", "bytes_in", "bytes_out", "bytes_saved", "compute_time_ms")


@pytest.fixture(scope="module")
def keyed(seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with production_deployment(
        tmp_path_factory.mktemp("api-keys"),
        seaweed.endpoint,
        PIXELFLOW_RATE_LIMIT_CAPACITY="1000",
        WORKER_CONCURRENCY="2",
        WORKER_MAX_ACTIVE_JOBS="1",
    ) as deployment:
        # No PIXELFLOW_AUTH at all: api_key is what `pixelflow api` does by default.
        deployment.env.pop("PIXELFLOW_AUTH")
        deployment.start(workers=("worker",))
        yield deployment


def list_keys(deployment: Deployment, *args: str) -> list[dict[str, Any]]:
    result = deployment.cli("keys", "list", "--json", *args)
    return [json.loads(line) for line in result.stdout.splitlines()]


async def submit(deployment: Deployment, key: str, data: bytes) -> dict[str, Any]:
    """Create, upload, start and wait: the finished job."""
    async with deployment.key_client(key) as client:
        created = await client.post(
            "/v1/jobs", json={"source_type": "s3_presigned", "pipeline": QUICK}
        )
        assert created.status_code == 202, f"{created.text}\n{deployment.logs()}"
        body = created.json()
        async with deployment.key_client(key) as plain:
            put = await plain.put(body["upload"]["presigned_put_url"], content=data)
        assert put.status_code == 200, put.text
        started = await client.post(body["start_url"])
        assert started.status_code == 202, started.text
        return await deployment.wait_status(client, body["job_id"], {"succeeded", "failed"})


async def test_a_key_from_the_cli_works_until_it_is_revoked(keyed: Deployment) -> None:
    """Made, listed and revoked by `pixelflow keys`; refused by every API replica on the very
    next request (no cache to wait out)."""
    replica = f"http://127.0.0.1:{free_port()}"
    keyed.spawn("api-replica", "api", PIXELFLOW_API_ADDR=replica.removeprefix("http://"))
    keyed.processes["api-replica"].wait_http(f"{replica}/readyz")
    key = keyed.create_key("carol", name="ci runner")
    prefix = key[: len("pf_") + 8]
    async with keyed.key_client(key) as client, keyed.key_client(key, url=replica) as other:
        for api in (client, other):
            response = await api.get("/v1/jobs")
            assert response.status_code == 200, f"{response.text}\n{keyed.logs()}"

        listed = [row for row in list_keys(keyed) if row["prefix"] == prefix]
        assert listed == [
            {
                "prefix": prefix,
                "user_id": keyed.user("carol"),
                "name": "ci runner",
                "created_at": listed[0]["created_at"],
                "last_used_at": listed[0]["last_used_at"],
                "revoked_at": None,
            }
        ]
        assert listed[0]["last_used_at"] is not None  # the requests above
        assert key not in keyed.cli("keys", "list").stdout
        assert list_keys(keyed, "--user", keyed.user("nobody")) == []

        revoked = keyed.cli("keys", "revoke", prefix)
        assert f"revoked {prefix}" in revoked.stdout, revoked.stdout
        for api in (client, other):
            response = await api.get("/v1/jobs")
            assert response.status_code == 401, response.text
            assert response.json()["code"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
    keyed.processes["api-replica"].stop()
    assert list_keys(keyed, "--user", keyed.user("carol"))[0]["revoked_at"] is not None

    missing = keyed.cli("keys", "revoke", "pf_zzzzzzzz", check=False)
    assert missing.returncode == 1 and "api_key_not_found" in missing.stderr, missing.stderr


async def test_no_key_or_a_bad_key_is_401(keyed: Deployment) -> None:
    key = keyed.create_key("dave")
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    async with keyed.client() as client:
        for headers in (
            {},
            {"Authorization": f"Bearer {wrong}"},
            {"Authorization": f"Basic {key}"},
            {"X-User-ID": keyed.user("dave")},
        ):
            response = await client.get("/v1/jobs", headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["code"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")


async def test_another_users_job_is_404_on_every_route(
    keyed: Deployment, fixtures_dir: Path
) -> None:
    alice, bob = keyed.create_key("alice"), keyed.create_key("bob")
    data = (fixtures_dir / "rocket.jpg").read_bytes()
    async with keyed.key_client(alice) as mine, keyed.key_client(bob) as theirs:
        created = (
            await mine.post("/v1/jobs", json={"source_type": "s3_presigned", "pipeline": QUICK})
        ).json()
        job_id = created["job_id"]

        async def refused() -> None:
            for method, path in (
                ("GET", f"/v1/jobs/{job_id}"),
                ("POST", f"/v1/jobs/{job_id}/start"),
                ("POST", f"/v1/jobs/{job_id}/cancel"),
                ("GET", f"/v1/jobs/{job_id}/outputs/thumb"),
            ):
                response = await theirs.request(method, path)
                assert response.status_code == 404, (method, path, response.text)
                assert response.json()["code"] == "job_not_found", response.text
            assert job_id not in {
                job["id"] for job in (await theirs.get("/v1/jobs")).json()["jobs"]
            }

        await refused()  # while created: bob's start and cancel changed nothing
        assert (await mine.get(f"/v1/jobs/{job_id}")).json()["status"] == "created"

        async with keyed.client() as plain:
            assert (
                await plain.put(created["upload"]["presigned_put_url"], content=data)
            ).is_success
        assert (await mine.post(created["start_url"])).status_code == 202
        job = await keyed.wait_status(mine, job_id, {"succeeded", "failed"})
        assert job["status"] == "succeeded", f"{job}\n{keyed.logs()}"
        await refused()  # finished, with an output to steal
        assert (await mine.get(f"/v1/jobs/{job_id}/outputs/thumb")).status_code == 307


async def test_usage_after_a_real_job(keyed: Deployment, fixtures_dir: Path) -> None:
    key = keyed.create_key("erin")
    job = await submit(keyed, key, (fixtures_dir / "photo-1080p.jpg").read_bytes())
    assert job["status"] == "succeeded", f"{job}\n{keyed.logs()}"

    async with keyed.key_client(key) as client:
        report = (await client.get("/v1/usage")).json()
        by_day = (await client.get("/v1/usage", params={"group": "day"})).json()
    assert report["user_id"] == keyed.user("erin")
    assert report["jobs"] == 1
    for field in USAGE_FIELDS:
        assert report[field] == job["usage"][field], field
    assert report["pixels_processed"] == 160 * 120
    day = job["finished_at"][:10]
    assert [row for row in by_day["days"] if row["jobs"]] == [
        {"date": day, "jobs": 1, **{field: report[field] for field in USAGE_FIELDS}}
    ]

    # The operator's view is the same report.
    printed = keyed.cli("usage", "--user", keyed.user("erin"), "--json", "--group", "day")
    assert json.loads(printed.stdout) == by_day
    table = keyed.cli("usage", "--user", keyed.user("erin")).stdout
    assert "total" in table and f"{report['pixels_processed']:,}" in table, table


async def test_the_database_holds_no_full_key(keyed: Deployment) -> None:
    """A pg_dump of the deployment's database: key ids and hashes, never a key."""
    key = keyed.create_key("frank", name="dump")
    async with keyed.key_client(key) as client:
        assert (await client.get("/v1/jobs")).status_code == 200
    listed = list_keys(keyed, "--user", keyed.user("frank"))
    keyed.cli("keys", "revoke", listed[0]["prefix"])

    dump = await asyncio.to_thread(
        subprocess.run,
        ["pg_dump", "--no-owner", keyed.database_url],
        capture_output=True,
        timeout=60,
    )
    assert dump.returncode == 0, dump.stderr.decode()
    secret = key.split("_", 2)[2]
    assert listed[0]["prefix"].removeprefix("pf_").encode() in dump.stdout  # the right database
    assert key.encode() not in dump.stdout
    assert secret.encode() not in dump.stdout


def test_api_without_auth_refuses_a_public_address(tmp_path: Path) -> None:
    """PIXELFLOW_AUTH=none on `pixelflow api` binds loopback only, as on `serve`."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PIXELFLOW_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/unused",
        "PIXELFLOW_REDIS_URL": "redis://127.0.0.1:6379/15",
        "PIXELFLOW_STORAGE_URL": "s3://unused",
        "PIXELFLOW_AUTH": "none",
        "PIXELFLOW_API_ADDR": f"0.0.0.0:{free_port()}",
    }
    result = subprocess.run(pixelflow_command("api"), env=env, capture_output=True, timeout=60)
    assert result.returncode == 2, result.stderr.decode()
    assert b"PIXELFLOW_API_ADDR" in result.stderr and b"loopback" in result.stderr


def test_submit_presents_a_key(keyed: Deployment, fixtures_dir: Path, tmp_path: Path) -> None:
    """`pixelflow submit` takes the key from PIXELFLOW_API_KEY (or --api-key)."""
    key = keyed.create_key("grace")
    command = pixelflow_command(
        "submit", str(fixtures_dir / "rocket.jpg"), "--resize", "120", "--format", "png",
        "--url", keyed.url, "--out", str(tmp_path),
    )  # fmt: skip
    env = {**keyed.process_env({}), "PIXELFLOW_API_KEY": key}
    result = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert result.returncode == 0, f"{result.stderr.decode()}\n{keyed.logs()}"
    assert [p.name for p in tmp_path.iterdir()] == ["rocket-output.png"]

    without = subprocess.run(command, env=keyed.process_env({}), capture_output=True, timeout=120)
    assert without.returncode == 1 and b"unauthorized" in without.stderr, without.stderr
