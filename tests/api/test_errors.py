"""Bad input gets a clear JSON error with a stable code, and leaves nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ClientFactory
from tests.support.jobs import job_body, wait_for


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, str] = response.json()
    assert body["code"] == code, body
    assert body["error"]
    return body


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {
                "source_type": "s3_presigned",
                "pipeline": [{"id": "a", "action": "convert"}],
                "colour": 1,
            },
            "unknown_field",
            "colour is not a known field",
        ),
        (
            job_body({"id": "a", "action": "resize", "width": 10, "sharpness": 2}),
            "unknown_field",
            "pipeline[0].sharpness",
        ),
        (
            job_body({"id": "a", "action": "watermark", "watermark": {"text": "x", "font": "y"}}),
            "unknown_field",
            "pipeline[0].watermark.font",
        ),
        (
            job_body({"id": "a", "action": "convert"}, {"id": "b", "action": "resize", "width": 0}),
            "invalid_field",
            "pipeline[1].width must be 1..16384",
        ),
        *(
            (
                job_body({"id": "a", "action": "watermark", "watermark": {"text": text}}),
                "invalid_field",
                "pipeline[0].watermark.text must be one line",
            )
            for text in ("two\nlines", "cr\r", "tab\there", "nul\x00", "del\x7f", "ls\u2028")
        ),
        (
            job_body({"id": "a", "action": "resize", "width": "wide"}),
            "invalid_field",
            "pipeline[0].width",
        ),
        (
            job_body({"id": "a", "action": "resize", "width": 10, "quality": 101}),
            "invalid_field",
            "pipeline[0].quality must be 1..100",
        ),
        (
            job_body({"id": "a", "action": "rotate", "angle": 45}),
            "invalid_field",
            "pipeline[0].angle",
        ),
        (
            job_body({"id": "a", "action": "blur", "sigma": 0}),
            "invalid_field",
            "pipeline[0].sigma must be 0.3..100",
        ),
        (
            job_body({"id": "a", "action": "convert", "format": "bmp"}),
            "unsupported_format",
            "pipeline[0].format",
        ),
        (job_body({"id": "a", "action": "explode"}), "unknown_action", "pipeline[0].action"),
        (job_body({"id": "a", "action": "resize"}), "invalid_field", "width and/or height"),
        (
            job_body({"id": "a", "action": "convert"}, {"id": "a", "action": "convert"}),
            "duplicate_step_id",
            "pipeline[1].id",
        ),
        (
            job_body({"id": "a", "action": "convert", "input": "b"}),
            "invalid_input_step",
            "pipeline[0].input",
        ),
        (
            job_body({"id": "a", "action": "convert", "emit": False}),
            "invalid_pipeline",
            "pipeline[0].emit",
        ),
        (job_body({"id": "../x", "action": "convert"}), "invalid_field", "pipeline[0].id"),
        (
            {"source_type": "ftp", "pipeline": [{"id": "a", "action": "convert"}]},
            "invalid_field",
            "source_type",
        ),
        ({"source_type": "s3_presigned", "pipeline": []}, "invalid_field", "pipeline"),
        ({"source_type": "s3_presigned"}, "missing_field", "pipeline is required"),
        (
            job_body({"id": "a", "action": "convert"}, source="local_file"),
            "missing_field",
            "object_key",
        ),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, body: dict[str, object], code: str, message: str
) -> None:
    error = _assert_error(await client.post("/v1/jobs", json=body), 400, code)
    assert message in error["error"]
    # Nothing was stored.
    assert (await client.get("/v1/jobs")).json()["jobs"] == []


async def test_too_many_steps(make_client: ClientFactory) -> None:
    client = await make_client(PIXELFLOW_MAX_STEPS="2")
    steps = [{"id": f"s{i}", "action": "convert"} for i in range(3)]
    _assert_error(await client.post("/v1/jobs", json=job_body(*steps)), 400, "too_many_steps")


@pytest.mark.parametrize(
    "key",
    [
        "/etc/passwd",
        "../secret.jpg",
        "sub/../../secret.jpg",
        "escape.jpg",
        "escape-dir/secret.jpg",
        "",
    ],
)
async def test_local_paths_are_confined_to_the_root(client: httpx.AsyncClient, key: str) -> None:
    body = job_body({"id": "a", "action": "convert"}, source="local_file", key=key)
    expected = "missing_field" if key == "" else "invalid_source_path"
    _assert_error(await client.post("/v1/jobs", json=body), 400, expected)


@pytest.mark.parametrize("key", ["nope.jpg", "sub/nope.jpg", "bad-empty.png/x"])
async def test_a_missing_local_file_is_refused_at_create(
    client: httpx.AsyncClient, key: str
) -> None:
    body = job_body({"id": "a", "action": "convert"}, source="local_file", key=key)
    error = _assert_error(await client.post("/v1/jobs", json=body), 400, "local_file_missing")
    assert error["error"] == f"the local file {key!r} does not exist under the local source root"
    assert (await client.get("/v1/jobs")).json()["jobs"] == []


async def test_a_directory_is_not_a_local_file(
    client: httpx.AsyncClient, source_root: Path
) -> None:
    await asyncio.to_thread((source_root / "photos").mkdir)
    body = job_body({"id": "a", "action": "convert"}, source="local_file", key="photos")
    _assert_error(await client.post("/v1/jobs", json=body), 400, "local_file_missing")


async def test_a_local_file_gone_before_start_is_source_missing(
    client: httpx.AsyncClient, source_root: Path
) -> None:
    body = job_body({"id": "a", "action": "convert"}, source="local_file", key="rocket.jpg")
    created = await client.post("/v1/jobs", json=body)
    assert created.status_code == 202
    await asyncio.to_thread((source_root / "rocket.jpg").unlink)
    error = _assert_error(await client.post(created.json()["start_url"]), 409, "source_missing")
    assert error["error"] == "the local file 'rocket.jpg' no longer exists under the source root"
    assert "upload" not in error["error"]


async def test_malformed_and_oversized_bodies(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    _assert_error(await client.post("/v1/jobs", content=b"{", headers=headers), 400, "invalid_json")
    two_values = (
        b'{"source_type": "s3_presigned", "pipeline": [{"id": "a", "action": "convert"}]} {}'
    )
    _assert_error(
        await client.post("/v1/jobs", content=two_values, headers=headers), 400, "invalid_json"
    )
    _assert_error(
        await client.post(
            "/v1/jobs",
            content=b"source_type=x",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        415,
        "unsupported_media_type",
    )
    big = b'{"source_type": "s3_presigned", "pad": "' + b"x" * (1 << 20) + b'"}'
    _assert_error(
        await client.post("/v1/jobs", content=big, headers=headers), 413, "body_too_large"
    )

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 65536

    _assert_error(
        await client.post("/v1/jobs", content=chunks(), headers=headers), 413, "body_too_large"
    )


async def test_unknown_routes_and_methods_are_json(client: httpx.AsyncClient) -> None:
    _assert_error(await client.get("/v2/nothing"), 404, "not_found")
    _assert_error(await client.delete("/v1/jobs"), 405, "method_not_allowed")
    _assert_error(await client.get("/v1/jobs/unknown-id"), 404, "job_not_found")
    _assert_error(await client.post("/v1/jobs/unknown-id/start"), 404, "job_not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/jobs/"), ("POST", "/v1/jobs/"), ("GET", "/healthz/"), ("GET", "/v1/jobs/x/")],
)
async def test_a_trailing_slash_is_a_json_404_not_a_redirect(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={})
    body = _assert_error(response, 404, "not_found")
    assert "location" not in response.headers
    assert body["error"] == f"no route for {method} {path}"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:9000/hook", "webhook_url_not_allowed"),
        ("http://10.1.2.3/hook", "webhook_url_not_allowed"),
        ("http://169.254.169.254/latest/meta-data", "webhook_url_not_allowed"),
        ("http://[::1]/hook", "webhook_url_not_allowed"),
        ("ftp://example.com/hook", "invalid_webhook_url"),
        ("not a url", "invalid_webhook_url"),
    ],
)
async def test_webhook_url_policy(client: httpx.AsyncClient, url: str, code: str) -> None:
    body = {**job_body({"id": "a", "action": "convert"}), "webhook_url": url}
    _assert_error(await client.post("/v1/jobs", json=body), 400, code)


async def test_webhook_url_private_allowed_when_configured(make_client: ClientFactory) -> None:
    client = await make_client(PIXELFLOW_WEBHOOK_ALLOW_PRIVATE="true")
    body = {**job_body({"id": "a", "action": "convert"}), "webhook_url": "http://127.0.0.1/h"}
    created = await client.post("/v1/jobs", json=body)
    assert created.status_code == 202
    job = (await client.get(created.json()["job_url"])).json()
    assert job["webhook_url"] == "http://127.0.0.1/h"


@pytest.mark.parametrize(
    ("fixture", "code"),
    [
        ("bad-truncated.jpg", "invalid_image"),
        ("bad-not-an-image.jpg", "invalid_image"),
        ("bad-empty.png", "invalid_image"),
        ("bad-bomb-400mp.png", "source_too_large"),
    ],
)
async def test_bad_images_fail_their_job_and_the_service_keeps_serving(
    client: httpx.AsyncClient, fixture: str, code: str
) -> None:
    body = job_body({"id": "a", "action": "resize", "width": 100}, source="local_file", key=fixture)
    created = (await client.post("/v1/jobs", json=body)).json()
    assert (await client.post(created["start_url"])).status_code == 202
    job = await wait_for(client, created["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == code
    assert job["attempts"] == 1  # permanent: not retried
    assert job["outputs"] == []

    good = job_body(
        {"id": "a", "action": "resize", "width": 100}, source="local_file", key="rocket.jpg"
    )
    created = (await client.post("/v1/jobs", json=good)).json()
    await client.post(created["start_url"])
    assert (await wait_for(client, created["job_id"]))["status"] == "succeeded"


async def test_source_bigger_than_limit_is_refused_at_start(make_client: ClientFactory) -> None:
    client = await make_client(PIXELFLOW_MAX_SOURCE_BYTES="10000")
    body = job_body({"id": "a", "action": "convert"}, source="local_file", key="rocket.jpg")
    created = (await client.post("/v1/jobs", json=body)).json()
    _assert_error(await client.post(created["start_url"]), 413, "source_too_large")


async def test_an_overlong_idempotency_key_is_refused(client: httpx.AsyncClient) -> None:
    body = job_body({"id": "a", "action": "convert"})
    response = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k" * 256})
    _assert_error(response, 400, "invalid_idempotency_key")


async def test_an_output_the_job_does_not_have_is_404(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/jobs", json=job_body({"id": "a", "action": "convert"}))
    job_id = created.json()["job_id"]
    response = await client.get(f"/v1/jobs/{job_id}/outputs/a")
    _assert_error(response, 404, "output_not_found")


async def test_a_content_length_that_is_not_a_number_is_400(client: httpx.AsyncClient) -> None:
    request = client.build_request(
        "POST", "/v1/jobs", content=b"{}", headers={"content-type": "application/json"}
    )
    request.headers["Content-Length"] = "two"
    _assert_error(await client.send(request), 400, "bad_request")


async def test_readyz_names_a_broken_storage(client: httpx.AsyncClient, tmp_path: Path) -> None:
    await asyncio.to_thread((tmp_path / "data" / "objects").rmdir)
    response = await client.get("/readyz")
    body = _assert_error(response, 503, "not_ready")
    assert body["checks"]["storage"] == "unavailable"  # type: ignore[index]
