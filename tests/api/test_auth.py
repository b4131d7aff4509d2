"""Identity through the real app: header mode refuses anything but one well-formed header,
api_key mode refuses anything but a live key, and nobody sees another user's jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pixelflow.adapters.store.sqlite import SqliteStore
from pixelflow.core.identity import public_prefix
from pixelflow.services.keys import KeyService
from tests.api.conftest import ClientFactory
from tests.support.jobs import job_body, wait_for

CONVERT = job_body({"id": "a", "action": "convert"})
# Every route that reads or changes a job, as (method, path template).
JOB_ROUTES = [
    ("GET", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/start"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("GET", "/v1/jobs/{id}/outputs/a"),
]


Headers = list[tuple[str, str]]


def raw(headers: Headers) -> list[tuple[bytes, bytes]]:
    """As sent on the wire (UTF-8 too, which httpx would refuse to encode from text)."""
    return [(name.encode(), value.encode()) for name, value in headers]


async def every_route_refuses(client: httpx.AsyncClient, headers: Headers) -> None:
    """The create, list, usage and job routes all answer 401 ``unauthorized``."""
    requests = [
        ("POST", "/v1/jobs", CONVERT),
        ("GET", "/v1/jobs", None),
        ("GET", "/v1/usage", None),
        *((method, path.format(id="0" * 26), None) for method, path in JOB_ROUTES),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, json=body, headers=raw(headers))
        assert response.status_code == 401, (method, path, headers, response.text)
        assert response.json()["code"] == "unauthorized", response.text


# -- header mode ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("X-User-ID", "")],
        [("X-User-ID", "   ")],
        [("X-User-ID", "alice bob")],
        [("X-User-ID", "alice,bob")],
        [("X-User-ID", "a" * 129)],
        [("X-User-ID", "../alice")],
        [("X-User-ID", "\u00e5lice")],
        [("X-User-ID", "alice"), ("X-User-ID", "alice")],
        [("X-User-ID", "alice"), ("x-user-id", "bob")],
    ],
    ids=[
        "missing",
        "empty",
        "blank",
        "space",
        "comma",
        "too-long",
        "slash",
        "non-ascii",
        "repeated",
        "two-users",
    ],
)
async def test_header_mode_refuses_a_bad_user_header(
    make_client: ClientFactory, headers: Headers
) -> None:
    client = await make_client(PIXELFLOW_AUTH="header")
    await every_route_refuses(client, headers)
    # No challenge scheme applies to a gateway's header.
    response = await client.get("/v1/jobs", headers=raw(headers))
    assert "www-authenticate" not in response.headers


async def test_header_mode_takes_the_configured_header(make_client: ClientFactory) -> None:
    client = await make_client(PIXELFLOW_AUTH="header", PIXELFLOW_USER_ID_HEADER="X-Tenant")
    created = await client.post("/v1/jobs", json=CONVERT, headers={"X-Tenant": "a.b_c@d:e+f-1"})
    assert created.status_code == 202, created.text
    job = await client.get(created.json()["job_url"], headers={"X-Tenant": "a.b_c@d:e+f-1"})
    assert job.json()["user_id"] == "a.b_c@d:e+f-1"
    refused = await client.get("/v1/jobs", headers={"X-User-ID": "a.b_c@d:e+f-1"})
    assert refused.status_code == 401


# -- api_key mode --------------------------------------------------------------------------------


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[KeyService]:
    """Keys made through a connection of their own to serve's database, as the CLI does."""
    store = await SqliteStore.open(tmp_path / "data" / "pixelflow.db")
    try:
        yield KeyService(store=store)
    finally:
        await store.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_api_key_mode_refuses_anything_but_a_live_key(
    make_client: ClientFactory, keys: KeyService
) -> None:
    client = await make_client(PIXELFLOW_AUTH="api_key")
    live = (await keys.create("alice")).secret
    wrong = live[:-1] + ("A" if live[-1] != "A" else "B")
    unknown = public_prefix("zzzzzzzz") + live[len(public_prefix("zzzzzzzz")) :]
    cases: list[Headers] = [
        [],
        [("Authorization", "")],
        [("Authorization", "Bearer")],
        [("Authorization", "Bearer ")],
        [("Authorization", live)],  # no scheme
        [("Authorization", f"Basic {live}")],
        [("Authorization", "Bearer not-a-key")],
        [("Authorization", f"Bearer {wrong}")],
        [("Authorization", f"Bearer {unknown}")],
        [("Authorization", f"Bearer {live}"), ("Authorization", f"Bearer {live}")],
        [("X-User-ID", "alice")],  # header mode's way in is not one here
    ]
    for headers in cases:
        await every_route_refuses(client, headers)
        response = await client.get("/v1/jobs", headers=raw(headers))
        assert response.headers["www-authenticate"].startswith("Bearer"), headers

    ok = await client.get("/v1/jobs", headers=bearer(live))
    assert ok.status_code == 200, ok.text
    # The scheme is case-insensitive (RFC 9110).
    assert (await client.get("/v1/jobs", headers={"Authorization": f"bearer {live}"})).is_success


async def test_a_revoked_key_is_refused_on_the_next_request(
    make_client: ClientFactory, keys: KeyService
) -> None:
    client = await make_client(PIXELFLOW_AUTH="api_key")
    created = await keys.create("alice", name="laptop")
    assert (await client.get("/v1/jobs", headers=bearer(created.secret))).status_code == 200

    await keys.revoke(public_prefix(created.key.id))
    refused = await client.get("/v1/jobs", headers=bearer(created.secret))
    assert refused.status_code == 401, refused.text
    assert refused.json() == {"error": "the API key is not valid", "code": "unauthorized"}
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


async def test_a_users_jobs_are_invisible_to_other_keys(
    make_client: ClientFactory, keys: KeyService
) -> None:
    client = await make_client(PIXELFLOW_AUTH="api_key")
    alice = bearer((await keys.create("alice")).secret)
    alice_laptop = bearer((await keys.create("alice")).secret)
    bob = bearer((await keys.create("bob")).secret)

    body = job_body(
        {"id": "a", "action": "resize", "width": 32}, source="local_file", key="rocket.jpg"
    )
    created = await client.post("/v1/jobs", json=body, headers=alice)
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]

    for method, path in JOB_ROUTES:
        response = await client.request(method, path.format(id=job_id), headers=bob)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "job_not_found"
    assert (await client.get("/v1/jobs", headers=bob)).json()["jobs"] == []

    # The same user's other key sees it, and it was never touched by bob's attempts.
    assert (await client.post(f"/v1/jobs/{job_id}/start", headers=alice_laptop)).is_success
    client.headers.update(alice)
    job = await wait_for(client, job_id)
    assert job["status"] == "succeeded" and job["user_id"] == "alice"
    listed = (await client.get("/v1/jobs", headers=alice_laptop)).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]


async def test_the_sqlite_file_holds_no_full_key(
    make_client: ClientFactory, keys: KeyService, tmp_path: Path
) -> None:
    """What a stolen copy of serve's data directory gives away: key ids and hashes, never a
    key (WAL and shared-memory files included)."""
    client = await make_client(PIXELFLOW_AUTH="api_key")
    created = await keys.create("alice", name="dump-check")
    assert (await client.get("/v1/jobs", headers=bearer(created.secret))).status_code == 200
    await keys.revoke(created.key.id)

    secret_part = created.secret.removeprefix(public_prefix(created.key.id) + "_")
    assert len(secret_part) == 43
    dumped = b"".join(
        path.read_bytes() for path in (tmp_path / "data").rglob("pixelflow.db*") if path.is_file()
    )
    assert created.key.key_hash.encode() in dumped  # the right bytes were read
    assert created.secret.encode() not in dumped
    assert secret_part.encode() not in dumped
