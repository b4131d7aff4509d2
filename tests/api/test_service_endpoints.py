"""Health, readiness and the generated OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from pixelflow.api.app import create_app
from pixelflow.api.openapi import build_openapi
from pixelflow.api.spec import ApiRoute, PageRoute, Spec
from pixelflow.config import Role, load_settings
from pixelflow.core.wire import CreateJobRequest, HealthStatus
from tests.support.jobs import job_body


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
    # Query parameters carry their Struct's types and constraints, not "string".
    listed = {p["name"]: p for p in spec["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert listed["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 20,
    }
    assert listed["status"]["schema"] == {"$ref": "#/components/schemas/JobStatus"}
    upload = spec["paths"]["/v1/objects/{key}"]["put"]
    assert {"200", "401", "413"} <= set(upload["responses"])
    assert "application/octet-stream" in upload["requestBody"]["content"]

    page = await client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/v1/jobs/{job_id}/start" in page.text


def test_the_document_is_built_from_every_route_of_the_app(tmp_path: Path) -> None:
    settings = load_settings(Role.SERVE, {"PIXELFLOW_DATA_DIR": str(tmp_path)})
    app = create_app(settings)
    spec = app.state.openapi

    routes = [route for route in app.routes if isinstance(route, Route)]
    assert routes and all(isinstance(route, ApiRoute | PageRoute) for route in routes)
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    declared = {(r.path_format, r.method.lower()) for r in routes if isinstance(r, ApiRoute)}
    assert documented == declared
    # The console's pages are for people (HTML, cookies, forms), not part of the API: they and
    # the static files are the only things the document leaves out.
    pages = [route for route in routes if isinstance(route, PageRoute)]
    assert pages and all(route.path.startswith("/console") for route in pages)
    assert not any(path.startswith("/console") for path in spec["paths"])
    others = [route for route in app.routes if not isinstance(route, Route)]
    assert len(others) == 1 and isinstance(others[0], Mount) and others[0].path == "/assets"


def test_a_new_route_appears_by_declaring_its_spec() -> None:
    async def handler(request: Request) -> Response:
        raise NotImplementedError

    extra = ApiRoute(
        "/v1/usage", handler, method="GET", spec=Spec("Usage", {200: HealthStatus}, errors=(401,))
    )
    spec = build_openapi([extra])

    operation = spec["paths"]["/v1/usage"]["get"]
    assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert "HealthStatus" in spec["components"]["schemas"]


async def test_serve_answers_metrics_on_its_own_port(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/jobs", json=job_body({"id": "a", "action": "convert"}))
    job_id = created.json()["job_id"]
    await client.get(f"/v1/jobs/{job_id}")
    await client.get("/v1/jobs/no-such-job")
    await client.post(f"/v1/jobs/{job_id}/start")
    await client.get("/nowhere")
    await client.request("BREW", "/v1/jobs")

    text = (await client.get("/metrics")).text
    assert 'pixelflow_api_requests_total{method="POST",route="/v1/jobs",status="202"} 1.0' in text
    assert 'method="GET",route="/v1/jobs/{id}",status="200"} 1.0' in text
    assert 'method="GET",route="/v1/jobs/{id}",status="404"} 1.0' in text
    # The source was never uploaded: start answers 4xx, still under the template.
    assert 'method="POST",route="/v1/jobs/{id}/start",status="4' in text
    assert 'route="unmatched",status="404"} 1.0' in text
    assert 'method="OTHER",route="/v1/jobs",status="405"} 1.0' in text
    assert "BREW" not in text and "{job_id}" not in text
    assert job_id not in text  # never a raw path
    assert "pixelflow_api_request_duration_seconds_bucket" in text
    # One endpoint carries both roles: the embedded worker's metrics are here too.
    assert "pixelflow_worker_active_jobs 0.0" in text
    assert 'pixelflow_queue_depth{queue="default"}' in text
    assert "process_resident_memory_bytes" in text


def test_with_api_keys_the_document_declares_the_bearer_scheme(tmp_path: Path) -> None:
    settings = load_settings(Role.SERVE, {"PIXELFLOW_DATA_DIR": str(tmp_path)})
    assert "security" not in create_app(settings).state.openapi
    keyed = create_app(msgspec.structs.replace(settings, auth="api_key")).state.openapi
    assert keyed["security"] == [{"apiKey": []}]
    scheme = keyed["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
