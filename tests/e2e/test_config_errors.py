"""A bad configuration value stops the real process: exit status 2 and one line on stderr that
names the variable, before anything listens or touches a dependency."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.processes import free_port, pixelflow_command

# Production URLs that are never contacted: configuration is refused before any connection.
PRODUCTION = {
    "PIXELFLOW_DATABASE_URL": "postgresql://pixelflow@127.0.0.1:1/pixelflow",
    "PIXELFLOW_REDIS_URL": "redis://127.0.0.1:1/0",
    "PIXELFLOW_STORAGE_URL": "s3://pixelflow",
    "PIXELFLOW_AUTH": "header",
    "WEBHOOK_SIGNING_SECRET": "a-test-secret-of-enough-length",
}


def run(
    tmp_path: Path, command: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pixelflow_command(*command),
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(result: subprocess.CompletedProcess[str], variable: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith(f"pixelflow: configuration error: {variable}: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("WORKER_MAX_ATTEMPTS", "many", "not an integer"),
        ("PIXELFLOW_PUBLIC_URL", "garbage", "absolute http:// or https:// URL"),
        ("PIXELFLOW_PUBLIC_URL", "ftp://files.example.com", "absolute http:// or https:// URL"),
        ("PIXELFLOW_USER_ID_HEADER", "X User", "not a valid HTTP header name"),
        ("PIXELFLOW_USER_ID_HEADER", "X-User:", "not a valid HTTP header name"),
        ("WORKER_RETRY_BACKOFF", "600", "above WORKER_RETRY_MAX_BACKOFF (300 s)"),
        ("WORKER_METRICS_ADDR", "127.0.0.1:9191", "not used by `pixelflow serve`"),
        ("PIXELFLOW_DATABASE_URL", "sqlite:///", "names no file"),
    ],
)
def test_serve_refuses(tmp_path: Path, variable: str, value: str, says: str) -> None:
    command = ["serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
    line = assert_refused(run(tmp_path, command, {variable: value}), variable)
    assert says in line


@pytest.mark.parametrize(
    "data_dir",
    ["a-file/data", "/proc/pixelflow-data"],
    ids=["under-a-file", "not-creatable"],
)
@pytest.mark.parametrize("how", ["variable", "flag"])
def test_serve_refuses_an_unusable_data_dir(tmp_path: Path, data_dir: str, how: str) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    path = tmp_path / data_dir
    command = ["serve", "--port", str(free_port())]
    env = {"PIXELFLOW_DATA_DIR": str(path)}
    if how == "flag":
        command += ["--data-dir", str(path)]
        env = {}
    line = assert_refused(run(tmp_path, command, env), "PIXELFLOW_DATA_DIR")
    assert f"{path} cannot be created or written" in line


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        ("api", "PIXELFLOW_PUBLIC_URL", "garbage"),
        ("api", "PIXELFLOW_USER_ID_HEADER", "X User"),
        ("worker", "WORKER_RETRY_BACKOFF", "301"),
        ("api", "PIXELFLOW_DATABASE_URL", "sqlite:///"),
    ],
)
def test_production_roles_refuse(tmp_path: Path, command: str, variable: str, value: str) -> None:
    assert_refused(run(tmp_path, [command], {**PRODUCTION, variable: value}), variable)
