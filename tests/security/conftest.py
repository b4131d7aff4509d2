"""A real ``pixelflow serve`` process, set up the way the README starts it: in a project folder
that is both the ``local_file`` source root and the parent of the data directory."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import PixelflowProcess, free_port

MAX_SOURCE_BYTES = 2 << 20


class Target:
    def __init__(self, root: Path, log: Path, **env: str) -> None:
        self.root = root
        self.data_dir = root / ".pixelflow"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        environment = {
            "PIXELFLOW_LOCAL_SOURCE_ROOT": str(root),
            "PIXELFLOW_API_METRICS_ADDR": "",
            "PIXELFLOW_RATE_LIMIT_CAPACITY": "0",
            "PIXELFLOW_MAX_SOURCE_BYTES": str(MAX_SOURCE_BYTES),
            **env,
        }
        self.process = PixelflowProcess(args, env=environment, log_path=log)

    def start(self) -> Target:
        self.process.start().wait_http(f"{self.url}/healthz")
        return self

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def run(self, client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
        """Create, start and wait for a job; its final record."""
        created = client.post("/v1/jobs", json=body)
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        assert client.post(f"/v1/jobs/{job_id}/start").status_code == 202
        return self.wait(client, job_id)

    def wait(self, client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in {"succeeded", "failed", "canceled"}:
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.2)


def project_folder(base: Path, fixtures_dir: Path) -> Path:
    """A source root with sample images, a bomb, an SVG (a loader outside the allowlist) and
    symlinks that escape the root or lead into the data directory."""
    root = base / "project"
    root.mkdir()
    for name in ("rocket.jpg", "bad-bomb-400mp.png", "bad-not-an-image.jpg"):
        shutil.copyfile(fixtures_dir / name, root / name)
    (root / "drawing.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" '
        'height="8"/></svg>'
    )
    outside = base / "outside"
    outside.mkdir()
    shutil.copyfile(fixtures_dir / "rocket.jpg", outside / "secret.jpg")
    os.symlink(outside / "secret.jpg", root / "escape.jpg")
    os.symlink(outside, root / "escape-dir")
    os.symlink(root / ".pixelflow", root / "data-link")
    os.symlink(root / ".pixelflow" / "signing.key", root / "key-link.jpg")
    return root


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Iterator[Target]:
    base = tmp_path_factory.mktemp("security")
    server = Target(project_folder(base, fixtures_dir), base / "serve.log").start()
    yield server
    server.process.stop()
