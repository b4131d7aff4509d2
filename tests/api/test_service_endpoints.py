"""Health, readiness and the generated OpenAPI document."""

from __future__ import annotations

import httpx

from pixelflow.core.wire import CreateJobRequest
from tests.api.conftest import ClientFactory
from tests.support.jobs import job_body
from tests.support.processes import free_port


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "queue": "ok", "storage": "ok"}


async def test_openapi_is_generated_from_the_structs(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert {"/v1/jobs", "/v1/jobs/{job_id}/start", "/healthz", "/readyz"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    request = schemas["CreateJobRequest"]
    assert set(request["properties"]) == set(CreateJobRequest.__struct_fields__)
    resize = schemas["ResizeStep"]["properties"]
    assert resize["width"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 16384}
    post = spec["paths"]["/v1/jobs"]["post"]
    assert "202" in post["responses"] and "413" in post["responses"]

    page = await client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/v1/jobs/{job_id}/start" in page.text


async def test_metrics_are_served_with_route_templates(make_client: ClientFactory) -> None:
    port = free_port()
    client = await make_client(PIXELFLOW_API_METRICS_ADDR=f"127.0.0.1:{port}")
    created = await client.post("/v1/jobs", json=job_body({"id": "a", "action": "convert"}))
    await client.get(f"/v1/jobs/{created.json()['job_id']}")
    await client.get("/v1/jobs/no-such-job")
    await client.get("/nowhere")

    async with httpx.AsyncClient() as scraper:
        text = (await scraper.get(f"http://127.0.0.1:{port}/metrics")).text
    assert 'pixelflow_api_requests_total{method="POST",route="/v1/jobs",status="202"} 1.0' in text
    assert 'route="/v1/jobs/{job_id}",status="200"} 1.0' in text
    assert 'route="/v1/jobs/{job_id}",status="404"} 1.0' in text
    assert 'route="unmatched",status="404"} 1.0' in text
    assert created.json()["job_id"] not in text  # never a raw path
    assert "pixelflow_api_request_duration_seconds_bucket" in text
    assert "pixelflow_worker_active_jobs 0.0" in text
