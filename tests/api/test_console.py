"""The console's defences over HTTP, in-process: CSRF on every write, its cookie's attributes,
tenancy (another user's job is a 404 page), and outputs served from this origin."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from pixelflow.console.identity import COOKIE
from tests.api.conftest import ClientFactory
from tests.support.jobs import job_body, wait_for

_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_token(page: httpx.Response) -> str:
    match = _TOKEN.search(page.text)
    assert match is not None, page.text
    return match.group(1)


async def local_job(client: httpx.AsyncClient, **headers: str) -> str:
    created = await client.post(
        "/v1/jobs",
        json=job_body({"id": "a", "action": "convert"}, source="local_file", key="rocket.jpg"),
        headers=headers,
    )
    assert created.status_code == 202, created.text
    job_id: str = created.json()["job_id"]
    return job_id


async def test_every_write_needs_the_sessions_csrf_token(make_client: ClientFactory) -> None:
    client = await make_client()
    job_id = await local_job(client)
    page = await client.get(f"/console/jobs/{job_id}")
    assert page.status_code == 200
    token = csrf_token(page)
    cancel = f"/console/jobs/{job_id}/cancel"

    missing = await client.post(cancel, data={})
    # Another first character: the token is random url-safe base64, so one starting with "x"
    # (1 in 64) would have made "x" + token[1:] the right token.
    forged = ("y" if token[0] == "x" else "x") + token[1:]
    wrong = await client.post(cancel, data={"csrf_token": forged})
    as_header = await client.post(cancel, headers={"X-CSRF-Token": "nope"})
    # A token is worth nothing with another session's cookie.
    other = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    stolen = await other.post(cancel, data={"csrf_token": token})
    for refused in (missing, wrong, as_header, stolen):
        assert refused.status_code == 403, refused.text
        assert "csrf_failed" in refused.text
    assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "created"

    done = await client.post(cancel, data={"csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == f"/console/jobs/{job_id}"
    assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "canceled"

    created = await client.post("/console/new", json=job_body({"id": "a", "action": "convert"}))
    assert created.status_code == 403


async def test_the_console_uploads_only_to_a_job_waiting_for_its_source(
    client: httpx.AsyncClient, fixtures_dir: Path
) -> None:
    token = csrf_token(await client.get("/console"))
    headers = {"X-CSRF-Token": token}
    created = await client.post(
        "/console/new", json=job_body({"id": "a", "action": "convert"}), headers=headers
    )
    assert created.status_code == 201, created.text
    urls = created.json()
    image = (fixtures_dir / "rocket.jpg").read_bytes()
    put = await client.put(urls["upload_url"], content=image, headers=headers)
    assert put.status_code == 200 and put.json() == {"bytes": len(image)}
    started = await client.post(urls["start_url"], headers=headers)
    assert started.status_code == 303
    again = await client.put(urls["upload_url"], content=image, headers=headers)
    assert again.status_code == 409 and again.json()["code"] == "upload_not_allowed"

    local = await local_job(client)
    refused = await client.put(f"/console/jobs/{local}/source", content=image, headers=headers)
    assert refused.status_code == 409 and refused.json()["code"] == "upload_not_allowed"
    # A local_file job is not the console's to create.
    body = job_body({"id": "a", "action": "convert"}, source="local_file", key="rocket.jpg")
    assert (await client.post("/console/new", json=body, headers=headers)).status_code == 400


async def test_the_session_cookie_is_httponly_strict_and_secure_behind_https(
    make_client: ClientFactory,
) -> None:
    client = await make_client()
    cookie = (await client.get("/console")).headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie
    # Reused, not reissued, while it lives.
    assert "set-cookie" not in (await client.get("/console")).headers

    secure = await make_client(PIXELFLOW_PUBLIC_URL="https://pixelflow.example")
    assert "Secure" in (await secure.get("/console")).headers["set-cookie"]


async def test_pages_carry_a_same_origin_content_security_policy(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/console", "/console/new", "/console/usage", "/docs"):
        response = await client.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert policy.startswith("default-src 'self';"), path
        assert "http" not in policy and "unsafe-inline" not in policy, path
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_another_users_job_is_a_404_everywhere_in_the_console(
    make_client: ClientFactory,
) -> None:
    client = await make_client(PIXELFLOW_AUTH="header")
    alice, bob = {"X-User-ID": "alice"}, {"X-User-ID": "bob"}
    job_id = await local_job(client, **alice)
    await client.post(f"/v1/jobs/{job_id}/start", headers=alice)
    job = await wait_for(client_as(client, alice), job_id)
    assert job["status"] == "succeeded"
    assert (await client.get(f"/console/jobs/{job_id}", headers=alice)).status_code == 200
    output = await client.get(f"/console/jobs/{job_id}/outputs/a", headers=alice)
    assert output.status_code == 200 and output.headers["content-type"] == "image/jpeg"

    client.cookies.clear()
    page = await client.get("/console/jobs/" + job_id, headers=bob)
    token = csrf_token(await client.get("/console", headers=bob))
    for response in (
        page,
        await client.get(f"/console/jobs/{job_id}/panel", headers=bob),
        await client.get(f"/console/jobs/{job_id}/outputs/a", headers=bob),
        await client.post(f"/console/jobs/{job_id}/cancel", headers={**bob, "X-CSRF-Token": token}),
    ):
        assert response.status_code == 404, response.text
        assert job_id not in response.text.replace(f"job {job_id} not found", "")
    assert "Not found" in page.text
    assert job_id not in (await client.get("/console", headers=bob)).text
    # Without the gateway's header the console knows nobody: a 401 page, no data.
    client.cookies.clear()
    for path in ("/console", f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/outputs/a"):
        nobody = await client.get(path)
        assert nobody.status_code == 401 and job_id not in nobody.text, path


def client_as(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=client._transport, base_url=str(client.base_url), headers=headers
    )


async def test_the_usage_page_charts_the_chosen_month_and_metric(
    client: httpx.AsyncClient,
) -> None:
    job_id = await local_job(client)
    await client.post(f"/v1/jobs/{job_id}/start")
    assert (await wait_for(client, job_id))["status"] == "succeeded"

    page = await client.get("/console/usage", params={"metric": "bytes_saved"})
    assert page.status_code == 200
    assert '<dd id="total-jobs">1</dd>' in page.text
    assert "Bytes saved per day" in page.text and page.text.count('class="bar"') >= 28
    earlier = await client.get("/console/usage", params={"month": "2020-02"})
    assert '<dd id="total-jobs">0</dd>' in earlier.text
    assert earlier.text.count('class="bar"') == 29  # a leap February, a bar per day
    for bad in ({"month": "2020-13"}, {"metric": "money"}):
        refused = await client.get("/console/usage", params=bad)
        assert refused.status_code == 400 and "invalid_parameter" in refused.text
