"""The job lifecycle through the real API, the embedded worker, SQLite and local storage."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import ClientFactory
from tests.support.jobs import (
    DONE_WHEN_OUTPUTS,
    DONE_WHEN_PIPELINE,
    decode,
    job_body,
    loader_format,
    wait_for,
)


async def _check_done_when_outputs(client: httpx.AsyncClient, job: dict[str, Any]) -> None:
    assert job["status"] == "succeeded", job
    outputs = {o["step_id"]: o for o in job["outputs"]}
    assert set(outputs) == set(DONE_WHEN_OUTPUTS)
    for step_id, (width, height, fmt, loader, content_type) in DONE_WHEN_OUTPUTS.items():
        output = outputs[step_id]
        assert (output["width"], output["height"], output["format"]) == (width, height, fmt)
        assert output["content_type"] == content_type
        response = await client.get(f"/v1/jobs/{job['id']}/outputs/{step_id}")
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert response.headers["content-length"] == str(output["bytes"])  # streamed, sized
        assert len(response.content) == output["bytes"]
        image = decode(response.content)
        assert (image.width, image.height) == (width, height)
        assert loader_format(image) == loader


async def test_local_file_job_end_to_end(client: httpx.AsyncClient, fixtures_dir: Path) -> None:
    created = await client.post(
        "/v1/jobs", json=job_body(*DONE_WHEN_PIPELINE, source="local_file", key="photo-12mp.jpg")
    )
    assert created.status_code == 202, created.text
    body = created.json()
    job_id = body["job_id"]
    assert body["status"] == "created"
    assert body["upload"] == {
        "object_key": "photo-12mp.jpg",
        "presigned_put_url": "",
        "presigned_url_state": "not_required",
        "expires_at": None,
        "presigned_post": None,
    }
    assert body["start_url"] == f"/v1/jobs/{job_id}/start"
    assert body["job_url"] == f"/v1/jobs/{job_id}"

    started = await client.post(body["start_url"])
    assert started.status_code == 202, started.text
    start = started.json()
    assert start["job_id"] == job_id and start["task_id"] == job_id
    assert start["status"] == "queued" and start["state"] == "enqueued"
    assert start["queue"] == "default" and start["enqueued_at"]

    job = await wait_for(client, job_id)
    await _check_done_when_outputs(client, job)
    assert job["attempts"] == 1
    usage = job["usage"]
    assert usage["bytes_in"] == (fixtures_dir / "photo-12mp.jpg").stat().st_size
    assert usage["pixels_processed"] == 800 * 600 + 4000 * 3000 + 400 * 400 + 320 * 240
    assert usage["bytes_out"] == sum(o["bytes"] for o in job["outputs"])
    assert job["created_at"] <= job["queued_at"] <= job["started_at"] <= job["finished_at"]


async def test_presigned_upload_job_end_to_end(
    client: httpx.AsyncClient, fixtures_dir: Path
) -> None:
    created = (await client.post("/v1/jobs", json=job_body(*DONE_WHEN_PIPELINE))).json()
    upload = created["upload"]
    assert upload["object_key"] == f"uploads/{created['job_id']}/source"
    assert upload["presigned_url_state"] == "ready" and upload["expires_at"]

    put = await client.put(
        upload["presigned_put_url"], content=(fixtures_dir / "photo-12mp.jpg").read_bytes()
    )
    assert put.status_code == 200, put.text
    assert (await client.post(created["start_url"])).status_code == 202
    await _check_done_when_outputs(client, await wait_for(client, created["job_id"]))


async def test_start_before_upload_is_source_missing(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/v1/jobs", json=job_body({"id": "a", "action": "convert"}))
    ).json()
    response = await client.post(created["start_url"])
    assert response.status_code == 409
    assert response.json()["code"] == "source_missing"
    job = (await client.get(created["job_url"])).json()
    assert job["status"] == "created"  # nothing half-done: it can still be uploaded and started


@pytest.mark.parametrize("breakage", ["a-file", "gone"])
async def test_start_with_the_storage_directory_broken_is_503(
    client: httpx.AsyncClient, tmp_path: Path, breakage: str
) -> None:
    """A broken storage is not a missing upload: 503 storage_unavailable (retry later), never
    409 source_missing (which tells the client to upload again)."""
    created = (
        await client.post("/v1/jobs", json=job_body({"id": "a", "action": "convert"}))
    ).json()
    objects = tmp_path / "data" / "objects"
    await asyncio.to_thread(shutil.rmtree, objects)
    if breakage == "a-file":
        await asyncio.to_thread(objects.write_bytes, b"not a directory")
    response = await client.post(created["start_url"])
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "storage_unavailable"
    assert (await client.get(created["job_url"])).json()["status"] == "created"


async def test_tampered_and_unsigned_upload_urls_are_refused(
    client: httpx.AsyncClient, fixtures_dir: Path
) -> None:
    created = (
        await client.post("/v1/jobs", json=job_body({"id": "a", "action": "convert"}))
    ).json()
    url = httpx.URL(created["upload"]["presigned_put_url"])
    data = (fixtures_dir / "rocket.jpg").read_bytes()

    other_key = url.copy_with(path=url.path.replace(created["job_id"], "someone-else"))
    for bad in (
        other_key,
        url.copy_remove_param("signature"),
        url.copy_set_param("expires", "9999999999"),
    ):
        response = await client.put(bad, content=data)
        assert response.status_code == 401, bad
        assert response.json()["code"] == "invalid_signature"
    assert (await client.post(created["start_url"])).json()["code"] == "source_missing"


async def test_start_is_idempotent_and_enqueues_once(client: httpx.AsyncClient) -> None:
    created = (
        await client.post(
            "/v1/jobs",
            json=job_body(
                {"id": "a", "action": "resize", "width": 64}, source="local_file", key="rocket.jpg"
            ),
        )
    ).json()
    responses = await asyncio.gather(*(client.post(created["start_url"]) for _ in range(5)))
    assert all(r.status_code == 202 for r in responses)
    states = sorted(r.json()["state"] for r in responses)
    assert states.count("enqueued") == 1
    job = await wait_for(client, created["job_id"])
    assert job["status"] == "succeeded" and job["attempts"] == 1

    again = await client.post(created["start_url"])
    assert again.status_code == 409 and again.json()["code"] == "job_not_startable"


async def test_cancel(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/v1/jobs", json=job_body({"id": "a", "action": "convert"}))
    ).json()
    canceled = await client.post(f"/v1/jobs/{created['job_id']}/cancel")
    assert canceled.status_code == 202 and canceled.json()["status"] == "canceled"
    assert canceled.json()["finished_at"]
    again = await client.post(f"/v1/jobs/{created['job_id']}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "job_not_cancelable"
    start = await client.post(created["start_url"])
    assert start.status_code == 409 and start.json()["code"] == "job_not_startable"


async def test_list_paginates_newest_first_and_filters(make_client: ClientFactory) -> None:
    client = await make_client(PIXELFLOW_AUTH="header")
    me = {"X-User-ID": "alice"}
    ids = []
    for _ in range(5):
        response = await client.post(
            "/v1/jobs", json=job_body({"id": "a", "action": "convert"}), headers=me
        )
        ids.append(response.json()["job_id"])
    await client.post(
        "/v1/jobs", json=job_body({"id": "a", "action": "convert"}), headers={"X-User-ID": "bob"}
    )
    await client.post(f"/v1/jobs/{ids[1]}/cancel", headers=me)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/jobs", params=params, headers=me)).json()
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    canceled = (await client.get("/v1/jobs", params={"status": "canceled"}, headers=me)).json()
    assert [job["id"] for job in canceled["jobs"]] == [ids[1]]

    # Another user's job is a 404, not a 403: its existence is not revealed.
    other = await client.get(f"/v1/jobs/{ids[0]}", headers={"X-User-ID": "bob"})
    assert other.status_code == 404 and other.json()["code"] == "job_not_found"

    bad_queries: list[dict[str, str]] = [
        {"limit": "0"},
        {"limit": "x"},
        {"limit": ""},  # found by schemathesis: once read as "absent"
        {"status": "done"},
        {"status": "null"},  # found by schemathesis: once read as None, i.e. every status
        {"colour": "red"},
    ]
    for bad in bad_queries:
        response = await client.get("/v1/jobs", params=bad, headers=me)
        assert response.status_code == 400, bad
        assert response.json()["code"] in {"invalid_parameter", "unknown_parameter"}


async def test_original_header_auth_flow(make_client: ClientFactory) -> None:
    client = await make_client(PIXELFLOW_AUTH="header")
    headers = {"X-User-ID": "user-42"}
    body = {
        "source_type": "local_file",
        "object_key": "chelsea.png",
        "pipeline": [
            {"id": "thumb", "action": "resize", "width": 200, "format": "jpeg", "quality": 80},
            {
                "id": "marked",
                "action": "watermark",
                "watermark": {"text": "(c) me", "opacity": 0.5, "gravity": "southeast"},
            },
        ],
    }
    created = await client.post("/v1/jobs", json=body, headers=headers)
    assert created.status_code == 202
    job_id = created.json()["job_id"]
    started = await client.post(f"/v1/jobs/{job_id}/start", headers=headers)
    assert set(started.json()) >= {"job_id", "status", "queue", "task_id", "state", "enqueued_at"}
    job = await wait_for_user(client, job_id, headers)
    assert job["status"] == "succeeded" and job["user_id"] == "user-42"

    # No header is no identity at all (the original let it into a shared anonymous tenant);
    # another user's header finds nothing.
    anonymous = await client.get(f"/v1/jobs/{job_id}")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"
    other = await client.get(f"/v1/jobs/{job_id}", headers={"X-User-ID": "user-43"})
    assert other.status_code == 404


async def wait_for_user(
    client: httpx.AsyncClient, job_id: str, headers: dict[str, str]
) -> dict[str, Any]:
    for _ in range(600):
        job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        if job["status"] in {"succeeded", "failed", "canceled"}:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


async def test_idempotency_key(client: httpx.AsyncClient) -> None:
    body = job_body({"id": "a", "action": "convert"})
    headers = {"Idempotency-Key": "order-1"}
    first = await client.post("/v1/jobs", json=body, headers=headers)
    second = await client.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]

    changed = job_body({"id": "a", "action": "convert", "format": "png"})
    reused = await client.post("/v1/jobs", json=changed, headers=headers)
    assert reused.status_code == 409 and reused.json()["code"] == "idempotency_key_reused"
    fresh = await client.post("/v1/jobs", json=body)
    assert fresh.json()["job_id"] != first.json()["job_id"]


async def test_rate_limit(make_client: ClientFactory) -> None:
    client = await make_client(PIXELFLOW_RATE_LIMIT_CAPACITY="3", PIXELFLOW_RATE_LIMIT_WINDOW="60")
    body = job_body({"id": "a", "action": "convert"})
    remaining = []
    for _ in range(3):
        response = await client.post("/v1/jobs", json=body)
        assert response.status_code == 202
        assert response.headers["RateLimit-Limit"] == "3"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert response.headers["RateLimit-Remaining"] == response.headers["X-RateLimit-Remaining"]
    assert remaining == [2, 1, 0]
    refused = await client.post("/v1/jobs", json=body)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    # Reads are not limited.
    assert (await client.get("/v1/jobs")).status_code == 200


async def test_an_upload_past_the_source_limit_is_refused_and_leaves_nothing(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """The upload is streamed to disk chunk by chunk, counted as it arrives."""
    client = await make_client(PIXELFLOW_MAX_SOURCE_BYTES="100000")
    created = (
        await client.post("/v1/jobs", json=job_body({"id": "a", "action": "convert"}))
    ).json()
    url = created["upload"]["presigned_put_url"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        for _ in range(4):
            yield b"x" * 40_000

    for body in (chunked(), b"x" * 100_001):
        response = await client.put(url, content=body)
        assert response.status_code == 413, response.text
        assert response.json()["code"] == "body_too_large"
    uploads = tmp_path / "data" / "objects" / "uploads"
    assert not uploads.exists() or [p for p in uploads.rglob("*") if p.is_file()] == []
    assert (await client.post(created["start_url"])).json()["code"] == "source_missing"

    within = await client.put(url, content=chunked_exactly(100_000))
    assert within.status_code == 200, within.text
    # Signed upload URLs take PUT only: downloads go through the outputs route.
    assert (await client.get(url)).status_code == 405


async def chunked_exactly(size: int) -> AsyncIterator[bytes]:
    yield b"y" * (size // 2)
    yield b"y" * (size - size // 2)
