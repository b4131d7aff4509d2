"""``serve`` carries both roles' metrics on one endpoint: its own API port by default, or the
address ``PIXELFLOW_API_METRICS_ADDR`` names."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.test_serve import Serve, start_local_job, wait_all
from tests.support.processes import free_port
from tests.support.prometheus import check_metrics, value

QUICK = [{"id": "thumb", "action": "resize", "width": 64, "format": "png"}]


def run_one_job(client: httpx.Client) -> str:
    job = start_local_job(client, QUICK)
    (done,) = wait_all(client, [job["job_id"]])
    assert done["status"] == "succeeded", done
    return str(job["job_id"])


def test_serve_answers_metrics_on_its_api_port_by_default(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    serve = Serve(tmp_path, fixtures_dir)
    del serve.env["PIXELFLOW_API_METRICS_ADDR"]
    serve.start()
    try:
        with httpx.Client(base_url=serve.url, timeout=30) as client:
            job_id = run_one_job(client)
            text = client.get("/metrics").text
    finally:
        serve.stop()
    check_metrics(text)
    # Both roles' metrics, from one registry.
    start = {"method": "POST", "route": "/v1/jobs/{id}/start", "status": "202"}
    assert value(text, "pixelflow_api_requests_total", **start) == 1
    assert value(text, "pixelflow_queue_jobs_enqueued_total", queue="default") == 1
    done = {"source_type": "local_file", "status": "succeeded"}
    assert value(text, "pixelflow_worker_jobs_total", **done) == 1
    assert value(text, "pixelflow_worker_pipeline_outputs_total") == 1
    assert value(text, "pixelflow_process_info", role="serve") == 1
    assert job_id not in text


def test_serve_uses_the_metrics_address_when_one_is_set(tmp_path: Path, fixtures_dir: Path) -> None:
    port = free_port()
    serve = Serve(tmp_path, fixtures_dir, PIXELFLOW_API_METRICS_ADDR=f"127.0.0.1:{port}")
    serve.start()
    try:
        with httpx.Client(base_url=serve.url, timeout=30) as client:
            run_one_job(client)
            on_api_port = client.get("/metrics")
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        serve.stop()
    assert on_api_port.status_code == 404
    assert on_api_port.json()["code"] == "not_found"
    done = {"source_type": "local_file", "status": "succeeded"}
    assert value(text, "pixelflow_worker_jobs_total", **done) == 1
    assert (
        value(text, "pixelflow_api_requests_total", method="GET", route="unmatched", status="404")
        == 1
    )
