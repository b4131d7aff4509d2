"""Health, readiness and the generated OpenAPI document."""

from __future__ import annotations

import httpx

from pixelflow.core.wire import CreateJobRequest


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
