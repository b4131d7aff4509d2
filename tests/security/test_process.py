"""What ``serve`` leaves on disk and prints: private files, no passwords, loopback by address."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from tests.security.conftest import Target
from tests.support.processes import pixelflow_command


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_files_are_private_to_their_owner(target: Target) -> None:
    with target.client() as client:
        client.post(
            "/v1/jobs",
            json={"source_type": "s3_presigned", "pipeline": [{"id": "a", "action": "convert"}]},
        )
    assert mode(target.data_dir) == 0o700
    for name in ("pixelflow.db", "pixelflow.db-wal", "pixelflow.db-shm", "signing.key"):
        path = target.data_dir / name
        assert path.exists(), name
        assert mode(path) == 0o600, (name, oct(mode(path)))


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pixelflow_command(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_a_configuration_error_does_not_print_the_password(tmp_path: Path) -> None:
    env = {
        "PIXELFLOW_DATABASE_URL": "mysql://admin:hunter2-secret@db.internal/pixelflow",
        "PIXELFLOW_REDIS_URL": "redis://:redis-pass-secret@r:6379/0",
        "PIXELFLOW_STORAGE_URL": "s3://bucket",
        "PIXELFLOW_AUTH": "header",
        "PATH": "/usr/bin:/bin",
    }
    result = run_cli("api", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "PIXELFLOW_DATABASE_URL" in result.stderr
    assert "hunter2-secret" not in result.stderr and "admin:***@db.internal" in result.stderr


def test_a_name_that_only_starts_like_loopback_is_not_loopback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PIXELFLOW_API_METRICS_ADDR": ""}
    result = run_cli(
        "serve",
        "--host",
        "127.evil.example",
        "--data-dir",
        str(tmp_path / "d"),
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
