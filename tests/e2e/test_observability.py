"""Operating the production deployment: both metrics endpoints after real jobs, the worker's
probes, one trace per job across ``api`` and ``worker``, and logs that carry the job's context
and nothing they must not.

Real ``pixelflow api`` and ``pixelflow worker`` processes on PostgreSQL, Redis and S3, with the
console span exporter (one JSON span per line on stdout, which lands in the process's log)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.deployment import Deployment, production_deployment
from tests.support.processes import PixelflowProcess, free_port
from tests.support.prometheus import check_metrics, value
from tests.support.receiver import Receiver, Reply
from tests.support.seaweed import SeaweedServer

PIPELINE = [
    {"id": "small", "action": "resize", "width": 320, "format": "webp"},
    {"id": "turned", "action": "rotate", "angle": 90, "input": "small", "format": "png"},
]


@pytest.fixture(scope="module")
def observed(
    seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    with production_deployment(
        tmp_path_factory.mktemp("observed"),
        seaweed.endpoint,
        PIXELFLOW_API_METRICS_ADDR=f"127.0.0.1:{free_port()}",
        WORKER_METRICS_ADDR=f"127.0.0.1:{free_port()}",
        OTEL_TRACES_EXPORTER="console",
        PIXELFLOW_LOG_FORMAT="json",
        WORKER_MAX_ACTIVE_JOBS="1",
        PIXELFLOW_WEBHOOK_ALLOW_PRIVATE="true",  # the receiver is on loopback
        WEBHOOK_INITIAL_BACKOFF="0.2",
        WEBHOOK_POLL_INTERVAL="0.2",
    ) as deployment:
        deployment.start(workers=("worker",))
        yield deployment


def metrics_url(deployment: Deployment, variable: str, path: str = "/metrics") -> str:
    return f"http://{deployment.env[variable]}{path}"


async def run_jobs(deployment: Deployment, fixtures_dir: Path) -> dict[str, dict[str, Any]]:
    """One job that succeeds and one whose source is not an image, each with a webhook (the
    failed job's receiver answers 500 once, then 200); the created responses and final records
    by outcome, once both webhooks are delivered."""
    receiver = await Receiver().start()
    try:
        return await _run_jobs(deployment, fixtures_dir, receiver)
    finally:
        await receiver.stop()


async def _run_jobs(
    deployment: Deployment, fixtures_dir: Path, receiver: Receiver
) -> dict[str, dict[str, Any]]:
    async with deployment.client("ops") as client:
        jobs: dict[str, dict[str, Any]] = {}
        for outcome, data, hook in (
            ("succeeded", (fixtures_dir / "rocket.jpg").read_bytes(), receiver.script("/ok")),
            ("failed", b"this is not an image", receiver.script("/flaky", Reply(status=500))),
        ):
            created = await client.post(
                "/v1/jobs",
                json={"source_type": "s3_presigned", "pipeline": PIPELINE, "webhook_url": hook},
            )
            assert created.status_code == 202, created.text
            body = created.json()
            async with httpx.AsyncClient(timeout=30) as http:
                put = await http.put(body["upload"]["presigned_put_url"], content=data)
            assert put.status_code == 200, put.text
            started = await client.post(f"/v1/jobs/{body['job_id']}/start")
            assert started.status_code == 202, started.text
            job = await deployment.wait_status(client, body["job_id"], {"succeeded", "failed"})
            assert job["status"] == outcome, f"{job}\n{deployment.logs()}"
            jobs[outcome] = {"created": body, "job": job}
        await receiver.wait_for("/ok", 1)
        await receiver.wait_for("/flaky", 2)
        for entry in jobs.values():
            await deployment.wait_job(
                client,
                entry["created"]["job_id"],
                lambda job: (job.get("webhook") or {}).get("state") == "delivered",
                "webhook delivered",
            )
        return jobs


@pytest.fixture(scope="module")
def jobs(observed: Deployment, fixtures_dir: Path) -> dict[str, dict[str, Any]]:
    return asyncio.run(run_jobs(observed, fixtures_dir))


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_api_metrics_after_real_jobs(
    observed: Deployment, jobs: dict[str, dict[str, Any]]
) -> None:
    text = await scrape(metrics_url(observed, "PIXELFLOW_API_METRICS_ADDR"))
    check_metrics(text)

    requests = "pixelflow_api_requests_total"
    assert value(text, requests, method="POST", route="/v1/jobs", status="202") == 2
    assert value(text, requests, method="POST", route="/v1/jobs/{id}/start", status="202") == 2
    assert value(text, requests, method="GET", route="/v1/jobs/{id}", status="200") >= 2
    assert value(
        text, "pixelflow_api_request_duration_seconds_count",
        method="POST", route="/v1/jobs/{id}/start", status="202",
    ) == 2  # fmt: skip
    assert value(text, "pixelflow_queue_jobs_enqueued_total", queue=observed.redis.queue_name) == 2
    # Both jobs are finished, so nothing is left in the queue.
    assert value(text, "pixelflow_queue_depth", queue=observed.redis.queue_name) == 0
    assert value(text, "pixelflow_process_info", role="api") == 1
    for job in jobs.values():
        assert job["created"]["job_id"] not in text  # labels are templates, never raw paths
    assert "{job_id}" not in text


async def test_worker_metrics_after_real_jobs(
    observed: Deployment, jobs: dict[str, dict[str, Any]]
) -> None:
    text = await scrape(metrics_url(observed, "WORKER_METRICS_ADDR"))
    check_metrics(text)

    done = jobs["succeeded"]["job"]
    jobs_total = "pixelflow_worker_jobs_total"
    assert value(text, jobs_total, source_type="s3_presigned", status="succeeded") == 1
    assert value(text, jobs_total, source_type="s3_presigned", status="failed") == 1
    assert value(
        text, "pixelflow_worker_job_duration_seconds_count",
        source_type="s3_presigned", status="succeeded",
    ) == 1  # fmt: skip
    assert value(text, "pixelflow_worker_active_jobs") == 0
    assert value(text, "pixelflow_worker_pipeline_outputs_total") == len(PIPELINE)
    usage = done["usage"]
    assert value(text, "pixelflow_usage_pixels_processed_total") == usage["pixels_processed"]
    assert value(text, "pixelflow_usage_bytes_saved_total") == usage["bytes_saved"]
    assert value(text, "pixelflow_usage_compute_time_ms_total") == usage["compute_time_ms"]
    # Operators' additions: queue wait per attempt, attempts per finished job, memory.
    assert value(text, "pixelflow_worker_queue_wait_seconds_count") == 2
    assert value(text, "pixelflow_worker_job_attempts_count", status="succeeded") == 1
    assert value(text, "pixelflow_worker_job_attempts_sum", status="succeeded") == 1
    assert value(text, "pixelflow_worker_job_attempts_count", status="failed") == 1
    assert value(text, "process_resident_memory_bytes") > 50 * 2**20
    # Nothing is being rendered now, so libvips holds (close to) nothing; the gauge is live.
    assert 0 <= value(text, "pixelflow_worker_vips_memory_bytes") < 64 * 2**20
    assert value(text, "pixelflow_queue_depth", queue=observed.redis.queue_name) == 0
    assert value(text, "pixelflow_process_info", role="worker") == 1
    # Two deliveries went through; the flaky receiver's first answer (500) is retried.
    assert value(text, "pixelflow_webhook_deliveries_total", outcome="delivered") == 2
    assert value(text, "pixelflow_webhook_deliveries_total", outcome="retrying") == 1
    assert (
        value(text, "pixelflow_webhook_delivery_duration_seconds_count", outcome="delivered") == 2
    )


async def test_worker_probes_on_its_metrics_port(observed: Deployment) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        live = await http.get(metrics_url(observed, "WORKER_METRICS_ADDR", "/healthz"))
        ready = await http.get(metrics_url(observed, "WORKER_METRICS_ADDR", "/readyz"))
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "queue": "ok", "storage": "ok"}


def spans(process: PixelflowProcess) -> list[dict[str, Any]]:
    """The console exporter's spans in a process's output (one JSON object per line)."""
    found = []
    for line in process.log_text().splitlines():
        if line.startswith("{") and '"context"' in line and '"span_id"' in line:
            found.append(json.loads(line))
    return found


def attempt_spans(deployment: Deployment, job_id: str) -> list[dict[str, Any]]:
    """The worker's ``pixelflow.job.process`` spans (one per attempt) of ``job_id``."""
    return [
        s
        for s in spans(deployment.processes["worker"])
        if s["name"] == "pixelflow.job.process" and s["attributes"]["pixelflow.job_id"] == job_id
    ]


def log_events(process: PixelflowProcess) -> list[dict[str, Any]]:
    events = []
    for line in process.log_text().splitlines():
        if line.startswith("{") and '"level"' in line:
            events.append(json.loads(line))
    return events


async def test_one_trace_per_job_from_api_request_to_worker_steps(
    observed: Deployment, jobs: dict[str, dict[str, Any]]
) -> None:
    job_id = jobs["succeeded"]["created"]["job_id"]
    api_spans = spans(observed.processes["api"])
    create = [
        s for s in api_spans
        if s["name"] == "POST /v1/jobs" and s["kind"] == "SpanKind.SERVER"
    ]  # fmt: skip
    assert create, f"no create span in the API's output:\n{observed.logs()}"
    trace_ids = {s["context"]["trace_id"] for s in create}

    worker_spans = attempt_spans(observed, job_id)
    assert len(worker_spans) == 1, worker_spans
    trace_id = worker_spans[0]["context"]["trace_id"]
    assert trace_id in trace_ids  # the worker continued the create request's trace
    # ... through the start request's enqueue span, which joined the job's trace and links
    # to the start request's own span.
    enqueue = [
        s for s in api_spans
        if s["name"] == "pixelflow.job.enqueue" and s["attributes"]["pixelflow.job_id"] == job_id
    ]  # fmt: skip
    assert len(enqueue) == 1, api_spans
    assert enqueue[0]["context"]["trace_id"] == trace_id
    assert worker_spans[0]["parent_id"] == enqueue[0]["context"]["span_id"]
    start = [s for s in api_spans if s["name"] == "POST /v1/jobs/{id}/start"]
    linked = {link["context"]["span_id"] for link in enqueue[0]["links"]}
    assert linked & {s["context"]["span_id"] for s in start}, enqueue[0]

    in_trace = [
        s for s in spans(observed.processes["worker"]) if s["context"]["trace_id"] == trace_id
    ]
    names = sorted(s["name"] for s in in_trace)
    assert names.count("pixelflow.job.claim") == 1, names
    assert names.count("pixelflow.job.fetch") == 1, names
    assert "pixelflow.step decode" in names, names
    assert {"pixelflow.step resize", "pixelflow.step rotate"} <= set(names), names
    assert names.count("pixelflow.job.emit") == len(PIPELINE), names
    # The webhook delivery (a loop of its own in the worker) joins the job's trace.
    (hook,) = [s for s in in_trace if s["name"] == "pixelflow.webhook.deliver"]
    assert hook["attributes"]["pixelflow.webhook.outcome"] == "delivered"
    assert hook["attributes"]["pixelflow.webhook.event"] == "job.completed"
    # The failed job's trace says why.
    failed_id = jobs["failed"]["created"]["job_id"]
    failed = attempt_spans(observed, failed_id)
    assert failed[0]["status"]["status_code"] == "ERROR", failed
    failed_trace = failed[0]["context"]["trace_id"]
    hooks = [
        s for s in spans(observed.processes["worker"])
        if s["name"] == "pixelflow.webhook.deliver" and s["context"]["trace_id"] == failed_trace
    ]  # fmt: skip
    outcomes = [s["attributes"]["pixelflow.webhook.outcome"] for s in hooks]
    assert outcomes == ["retrying", "delivered"], outcomes


async def test_logs_carry_the_job_context_and_no_payloads_or_signed_urls(
    observed: Deployment, jobs: dict[str, dict[str, Any]]
) -> None:
    job = jobs["succeeded"]
    job_id = job["created"]["job_id"]
    worker_events = log_events(observed.processes["worker"])
    about_job = [e for e in worker_events if e.get("job_id") == job_id]
    assert about_job, f"no worker log line carries job_id {job_id}:\n{observed.logs()}"
    picked = [e for e in about_job if "picked up" in e["message"]]
    assert len(picked) == 1, about_job
    assert all(len(e.get("trace_id", "")) == 32 for e in about_job), about_job
    assert any(e.get("attempt") == 1 and e.get("user_id") for e in about_job), about_job

    signature = job["created"]["upload"]["presigned_put_url"].split("Signature=")[-1][:16]
    for name, process in observed.processes.items():
        text = process.log_text()
        assert "process_job(" not in text, f"{name} logged a raw queue payload"
        assert signature not in text, f"{name} logged a presigned URL"
        assert observed.s3.secret_key not in text, f"{name} logged the S3 secret"
        assert "Traceback" not in text, f"{name} logged a traceback:\n{process.log_tail()}"


@pytest.mark.parametrize(("role", "variable"), [("api", "PIXELFLOW_API_METRICS_ADDR"),
                                                 ("worker", "WORKER_METRICS_ADDR")])  # fmt: skip
def test_a_taken_metrics_port_is_one_line_and_exit_1(
    observed: Deployment, tmp_path: Path, role: str, variable: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = observed.spawn(
            f"{role}-taken",
            role,
            **{variable: f"127.0.0.1:{port}", "PIXELFLOW_API_ADDR": f"127.0.0.1:{free_port()}"},
        )
        assert process.process is not None
        code = process.process.wait(timeout=60)
    output = process.log_text()
    assert code == 1, output
    assert "Traceback" not in output, output
    assert f"pixelflow: {variable}: cannot listen on 127.0.0.1:{port}" in output, output
