"""The console on the production processes (``pixelflow api`` in ``api_key`` mode, a worker,
PostgreSQL, Redis and SeaweedFS): sign-in with an API key, tenancy, usage, sign-out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Site, screenshot
from tests.browser.test_console_serve import JOB_TIMEOUT_MS, create_job
from tests.support.deployment import Deployment, production_deployment
from tests.support.processes import free_port
from tests.support.seaweed import SeaweedServer


@pytest.fixture(scope="module")
def deployment(
    seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    with production_deployment(
        tmp_path_factory.mktemp("console-api"),
        seaweed.endpoint,
        PIXELFLOW_AUTH="api_key",
        PIXELFLOW_RATE_LIMIT_CAPACITY="1000",
    ) as deployment:
        deployment.start(workers=("worker",))
        yield deployment


@pytest.fixture(scope="module")
def server_url(deployment: Deployment) -> str:
    return deployment.url


def sign_in(page: Page, key: str) -> None:
    page.goto("/console")
    expect(page).to_have_url(re.compile(r"/console/login\?next=/console$"))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console$"))


def test_sign_in_run_a_job_read_usage_and_sign_out(
    site: Site, deployment: Deployment, fixtures_dir: Path
) -> None:
    key = deployment.create_key("alice")
    context = site.context()
    page = context.new_page()
    page.goto("/console/usage")
    expect(page).to_have_url(re.compile(r"/console/login\?next=/console/usage$"))
    screenshot(page, "login")

    page.get_by_label("API key").fill(key[:-1] + ("x" if key[-1] != "x" else "y"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That API key is not valid.")
    cookie = {c["name"]: c for c in context.cookies()}["pixelflow_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert key not in cookie["value"]

    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/usage$"))  # back where it started
    expect(page.locator(".who")).to_contain_text(deployment.user("alice"))
    signed_in = {c["name"]: c for c in context.cookies()}["pixelflow_session"]["value"]
    assert signed_in != cookie["value"]  # a new session id at sign-in

    create_job(page, fixtures_dir / "rocket.jpg", "thumbnail")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    preview = page.locator(".output img").first
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=preview.element_handle()
    )
    screenshot(page, "job-api")

    page.goto("/console/usage")
    expect(page.locator("#total-jobs")).to_have_text("1")
    expect(page.locator(".chart rect.bar")).not_to_have_count(0)
    screenshot(page, "usage")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    # The signed-out session id is dead, even presented again.
    stale = {"pixelflow_session": signed_in}
    with httpx.Client(base_url=deployment.url, cookies=stale, follow_redirects=False) as client:
        response = client.get("/console")
    assert response.status_code == 303 and "/console/login" in response.headers["location"]


def test_no_page_shows_data_without_a_session_and_tenants_stay_apart(
    site: Site, deployment: Deployment, fixtures_dir: Path
) -> None:
    alice = site.page()
    sign_in(alice, deployment.create_key("alice2"))
    job_id = create_job(alice, fixtures_dir / "rocket.jpg", "thumbnail")
    expect(alice.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)

    # Bob, signed in with his own key, finds nothing of Alice's.
    bob = site.page()
    sign_in(bob, deployment.create_key("bob"))
    expect(bob.get_by_role("link", name=job_id)).to_have_count(0)
    response = bob.goto(f"/console/jobs/{job_id}")
    assert response is not None and response.status == 404
    expect(bob.get_by_role("heading", name="Not found")).to_be_visible()
    screenshot(bob, "other-tenant-404")
    output = bob.request.get(f"/console/jobs/{job_id}/outputs/thumb")
    assert output.status == 404

    # Nobody signed in: pages send to the sign-in page, everything else is a 401, and no
    # answer carries the job.
    paths = [
        "/console",
        "/console/new",
        "/console/usage",
        f"/console/jobs/{job_id}",
        f"/console/jobs/{job_id}/panel",
        f"/console/jobs/{job_id}/outputs/thumb",
        "/console/rows",
    ]
    with httpx.Client(base_url=deployment.url, follow_redirects=False) as anonymous:
        for path in paths:
            answer = anonymous.get(path)
            assert answer.status_code in {303, 401}, (path, answer.status_code)
            assert job_id not in answer.text, path
            if answer.status_code == 303:
                assert answer.headers["location"].startswith("/console/login?next=")
        posted = anonymous.post(f"/console/jobs/{job_id}/cancel")
        assert posted.status_code == 401


def test_a_revoked_key_ends_its_console_session(site: Site, deployment: Deployment) -> None:
    key = deployment.create_key("carol")
    page = site.page()
    sign_in(page, key)
    deployment.cli("keys", "revoke", key[: len("pf_") + 8])
    page.goto("/console")
    expect(page).to_have_url(re.compile(r"/console/login"))


def test_a_session_holds_on_every_api_replica(site: Site, deployment: Deployment) -> None:
    """Sessions live in the database: a browser signed in on one replica is signed in on the
    next, and signing out on either ends it on both."""
    replica = f"127.0.0.1:{free_port()}"
    deployment.spawn("api-replica", "api", PIXELFLOW_API_ADDR=replica)
    deployment.processes["api-replica"].wait_http(f"http://{replica}/readyz")
    page = site.page()
    sign_in(page, deployment.create_key("dave"))
    session = {c["name"]: c["value"] for c in page.context.cookies()}["pixelflow_session"]
    with httpx.Client(
        base_url=f"http://{replica}", cookies={"pixelflow_session": session}
    ) as other:
        assert deployment.user("dave") in other.get("/console").text
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/console/login$"))
        after = other.get("/console", follow_redirects=False)
        assert after.status_code == 303 and "/console/login" in after.headers["location"]
