"""One ``PIXELFLOW_AUTH`` per deployment, through the real processes: ``pixelflow api`` and
``pixelflow worker`` on PostgreSQL, Redis and SeaweedFS, the mode read and switched by
``pixelflow auth-mode``. The API identifies callers and the worker signs webhooks by the mode
(each user's secret, or the shared one), so a worker or API replica with another mode must not
start: its webhooks would carry signatures nobody checks against."""

from __future__ import annotations

from pathlib import Path

from tests.support.deployment import WORKER_READY, production_deployment
from tests.support.processes import free_port
from tests.support.seaweed import SeaweedServer


def test_a_process_with_another_mode_is_refused_until_the_operator_switches(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    with production_deployment(tmp_path, seaweed.endpoint) as deployment:
        assert deployment.cli("auth-mode").stdout == ""  # nothing has started yet
        deployment.start(workers=("worker",))  # header mode, the deployment's default
        assert deployment.cli("auth-mode").stdout == "header\n"

        deployment.env["PIXELFLOW_AUTH"] = "api_key"
        worker = deployment.spawn("keyed-worker", "worker")
        replica = deployment.spawn(
            "keyed-api", "api", PIXELFLOW_API_ADDR=f"127.0.0.1:{free_port()}"
        )
        for refused in (worker, replica):
            assert refused.process is not None
            assert refused.process.wait(timeout=60) == 1, deployment.logs()
            log = refused.log_text()
            assert "PIXELFLOW_AUTH=api_key, but this deployment runs with" in log, log
            assert "PIXELFLOW_AUTH=header" in log and "(auth_mode_mismatch)" in log, log
            assert WORKER_READY not in log and "Traceback" not in log, log
        assert deployment.cli("auth-mode").stdout == "header\n"  # the refusals changed nothing

        switched = deployment.cli("auth-mode", "api_key")
        assert "PIXELFLOW_AUTH=api_key" in switched.stderr, switched.stderr
        assert deployment.cli("auth-mode").stdout == "api_key\n"
        deployment.start_worker("keyed-worker-2")  # starts now

        refused_mode = deployment.cli("auth-mode", "basic", check=False)
        assert refused_mode.returncode == 2 and "invalid choice" in refused_mode.stderr
        assert deployment.cli("auth-mode").stdout == "api_key\n"
