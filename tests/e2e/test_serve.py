"""``pixelflow serve`` as a real process: the newcomer's path, and crash recovery."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jobs import DONE_WHEN_OUTPUTS, DONE_WHEN_PIPELINE, decode, loader_format
from tests.support.processes import PixelflowProcess, free_port, pixelflow_command


class Serve:
    def __init__(self, tmp_path: Path, source_root: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "data"
        self.env = {
            "PIXELFLOW_LOCAL_SOURCE_ROOT": str(source_root),
            "PIXELFLOW_API_METRICS_ADDR": "",
            # The slow pipelines below are blurs a worst-case 100 MP source could not finish.
            "PIXELFLOW_PIPELINE_BUDGET": "0",
            **env,
        }
        self.log = tmp_path / "serve.log"
        self.process: PixelflowProcess | None = None

    def start(self) -> Serve:
        args = ["serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        self.process = PixelflowProcess(args, env=self.env, log_path=self.log).start()
        self.process.wait_http(f"{self.url}/healthz")
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def serve(tmp_path: Path, fixtures_dir: Path) -> Iterator[Serve]:
    server = Serve(tmp_path, fixtures_dir)
    yield server
    server.stop()


def wait_all(
    client: httpx.Client, job_ids: list[str], timeout: float = 180
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]
        if all(job["status"] in {"succeeded", "failed", "canceled"} for job in jobs):
            return jobs
        assert time.monotonic() < deadline, [job["status"] for job in jobs]
        time.sleep(0.25)


def check_outputs(client: httpx.Client, job: dict[str, Any]) -> None:
    assert job["status"] == "succeeded", job
    assert {o["step_id"] for o in job["outputs"]} == set(DONE_WHEN_OUTPUTS)
    for step_id, (width, height, _, loader, _) in DONE_WHEN_OUTPUTS.items():
        response = client.get(f"/v1/jobs/{job['id']}/outputs/{step_id}")
        assert response.status_code == 200
        image = decode(response.content)
        assert (image.width, image.height, loader_format(image)) == (width, height, loader)


def test_serve_processes_local_and_uploaded_jobs(serve: Serve, fixtures_dir: Path) -> None:
    serve.start()
    with httpx.Client(base_url=serve.url, timeout=30) as client:
        local = client.post(
            "/v1/jobs",
            json={
                "source_type": "local_file",
                "object_key": "photo-12mp.jpg",
                "pipeline": DONE_WHEN_PIPELINE,
            },
        )
        assert local.status_code == 202
        uploaded = client.post(
            "/v1/jobs", json={"source_type": "s3_presigned", "pipeline": DONE_WHEN_PIPELINE}
        ).json()
        # A plain HTTP PUT, as curl would send it, to the URL the API handed out.
        put = httpx.put(
            uploaded["upload"]["presigned_put_url"],
            content=(fixtures_dir / "photo-12mp.jpg").read_bytes(),
        )
        assert put.status_code == 200
        ids = [local.json()["job_id"], uploaded["job_id"]]
        for job_id in ids:
            assert client.post(f"/v1/jobs/{job_id}/start").status_code == 202
        for job in wait_all(client, ids):
            check_outputs(client, job)


def start_local_job(client: httpx.Client, pipeline: list[dict[str, Any]]) -> dict[str, Any]:
    """Create and start a local_file job on photo-1080p.jpg; the create response."""
    created: dict[str, Any] = client.post(
        "/v1/jobs",
        json={"source_type": "local_file", "object_key": "photo-1080p.jpg", "pipeline": pipeline},
    ).json()
    assert client.post(created["start_url"]).status_code == 202
    return created


def wait_processing(client: httpx.Client, job_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.get(job_url).json()["status"] != "processing":
        assert time.monotonic() < deadline, f"{job_url} never started processing"
        time.sleep(0.05)


def test_jobs_survive_a_crash(tmp_path: Path, fixtures_dir: Path) -> None:
    env = {"WORKER_CONCURRENCY": "1", "WORKER_MAX_ACTIVE_JOBS": "1"}
    server = Serve(tmp_path, fixtures_dir, **env).start()
    slow = [{"id": f"s{i}", "action": "blur", "sigma": 8, "format": "png"} for i in range(3)]
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ids = [start_local_job(client, slow)["job_id"] for _ in range(3)]
            wait_processing(client, f"/v1/jobs/{ids[0]}")
            statuses = [client.get(f"/v1/jobs/{i}").json()["status"] for i in ids]
        assert "processing" in statuses and "queued" in statuses, statuses
        server.kill()

        server.start()  # same data directory
        with httpx.Client(base_url=server.url, timeout=30) as client:
            jobs = wait_all(client, ids)
        assert [job["status"] for job in jobs] == ["succeeded"] * 3
        for job, before in zip(jobs, statuses, strict=True):
            # The interrupted attempt counts; the queued ones ran once.
            assert job["attempts"] == (2 if before == "processing" else 1)
        for job in jobs:
            assert len(job["outputs"]) == 3
    finally:
        server.stop()


def test_a_graceful_stop_hands_in_flight_jobs_back(tmp_path: Path, fixtures_dir: Path) -> None:
    server = Serve(tmp_path, fixtures_dir, WORKER_CONCURRENCY="1").start()
    slow = [{"id": f"s{i}", "action": "blur", "sigma": 8, "format": "png"} for i in range(4)]
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            created = start_local_job(client, slow)
            wait_processing(client, created["job_url"])
        assert server.process is not None
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status shows it.
        assert server.process.stop() in {0, -15}
        assert "handed back to the queue at shutdown" in server.process.log_tail()

        with sqlite3.connect(server.data_dir / "pixelflow.db") as db:
            status, attempts = db.execute(
                "SELECT status, attempts FROM jobs WHERE id = ?", (created["job_id"],)
            ).fetchone()
        assert (status, attempts) == ("queued", 1)

        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            [job] = wait_all(client, [created["job_id"]])
        assert job["status"] == "succeeded" and job["attempts"] == 2
    finally:
        server.stop()


def test_submit_command(serve: Serve, fixtures_dir: Path, tmp_path: Path) -> None:
    serve.start()
    out = tmp_path / "out"
    result = subprocess.run(
        pixelflow_command(
            "submit",
            str(fixtures_dir / "rocket.jpg"),
            "--resize",
            "300",
            "--watermark",
            "hello",
            "--format",
            "webp",
            "--url",
            serve.url,
            "--out",
            str(out),
        ),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    saved = sorted(out.iterdir())
    assert [p.name for p in saved] == ["rocket-output.webp"]
    image = decode(saved[0].read_bytes())
    assert (image.width, loader_format(image)) == (300, "webp")

    failed = subprocess.run(
        pixelflow_command(
            "submit", str(fixtures_dir / "bad-truncated.jpg"), "--url", serve.url, "--out", str(out)
        ),
        capture_output=True,
        timeout=120,
    )
    assert failed.returncode == 1
    assert b"invalid_image" in failed.stderr


def test_invalid_config_names_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        pixelflow_command("serve", "--data-dir", str(tmp_path)),
        env={"PATH": "/usr/bin:/bin", "WORKER_MAX_ATTEMPTS": "many"},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"WORKER_MAX_ATTEMPTS" in result.stderr


def test_submit_timeout_says_the_job_keeps_running(
    serve: Serve, fixtures_dir: Path, tmp_path: Path
) -> None:
    """--timeout gives up waiting, not the job: it says so, names the job and exits 124."""
    serve.start()
    result = subprocess.run(
        pixelflow_command(
            "submit",
            str(fixtures_dir / "photo-12mp.jpg"),
            "--format",
            "png",  # a 12 MP PNG takes seconds to encode: far past a zero timeout
            "--timeout",
            "0",
            "--url",
            serve.url,
            "--out",
            str(tmp_path / "out"),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 124, result.stderr
    [job_id] = re.findall(r"job (\S+) is still (?:queued|processing)", result.stderr)
    assert "keeps running on the server" in result.stderr
    assert f"GET {serve.url}/v1/jobs/{job_id}" in result.stderr
    assert f"POST {serve.url}/v1/jobs/{job_id}/cancel" in result.stderr
    assert not (tmp_path / "out").exists()
    with httpx.Client(base_url=serve.url, timeout=30) as client:
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] in {"queued", "processing"}
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202  # tidy up


def test_keys_on_a_serve_data_directory(tmp_path: Path, fixtures_dir: Path) -> None:
    """`pixelflow keys` against serve's SQLite file while serve runs in api_key mode: the key
    works at once, is refused at once after its revocation, and the file never holds it."""
    server = Serve(tmp_path, fixtures_dir, PIXELFLOW_AUTH="api_key").start()
    data_dir = str(server.data_dir)

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        command = pixelflow_command("keys", *args, "--data-dir", data_dir)
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    try:
        created = keys("create", "--user", "alice", "--name", "laptop")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        prefix = key[: len("pf_") + 8]
        bearer = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/v1/jobs").status_code == 401
            assert client.get("/v1/jobs", headers=bearer).status_code == 200

            listed = keys("list")
            assert (
                prefix in listed.stdout and "alice" in listed.stdout and "laptop" in listed.stdout
            )
            assert key not in listed.stdout
            assert keys("revoke", prefix).returncode == 0
            refused = client.get("/v1/jobs", headers=bearer)
            assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    finally:
        server.stop()

    dumped = b"".join(path.read_bytes() for path in server.data_dir.glob("pixelflow.db*"))
    assert prefix.removeprefix("pf_").encode() in dumped  # the key's row is in these bytes
    assert key.encode() not in dumped
    assert key.split("_", 2)[2].encode() not in dumped


def test_operator_commands_never_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-data-dir"
    result = subprocess.run(
        pixelflow_command("keys", "list", "--data-dir", str(missing)),
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr.decode()
    assert b"PIXELFLOW_DATABASE_URL: no database at" in result.stderr
    assert not missing.exists()
