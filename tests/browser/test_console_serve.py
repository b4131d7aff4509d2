"""The console on ``pixelflow serve`` (``none`` mode: no sign-in), in a real browser."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Site, running_serve, screenshot

# A job takes a few seconds at most here; a wait that long means something is wrong.
JOB_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Webhooks to the test's receiver on loopback, retried quickly.
    env = {
        "PIXELFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_INITIAL_BACKOFF": "0.2",
        "WEBHOOK_MAX_BACKOFF": "0.5",
        "WEBHOOK_POLL_INTERVAL": "0.1",
    }
    with running_serve(tmp_path_factory.mktemp("serve"), **env) as url:
        yield url


class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers the first webhook 503 and the next ones 200."""

    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Receiver.calls += 1
        self.send_response(503 if Receiver.calls == 1 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def create_job(page: Page, image: Path, preset: str) -> str:
    """Choose ``image``, pick ``preset`` and run it; the new job's id (on its page)."""
    page.goto("/console/new")
    page.get_by_label("Choose an image").set_input_files(image)
    page.locator(f"[data-preset='{preset}']").click()
    page.get_by_role("button", name="Create and run").click()
    page.wait_for_url(re.compile(r"/console/jobs/[^/]+$"))
    return page.url.rsplit("/", 1)[-1]


def test_a_job_made_by_choosing_a_file_runs_before_your_eyes(
    site: Site, fixtures_dir: Path
) -> None:
    page = site.page()
    page.goto("/console/new")
    screenshot(page, "new-job")
    job_id = create_job(page, fixtures_dir / "photo-1080p.jpg", "responsive")

    # The page refreshes itself (a fragment, not a reload: the marker survives) until done.
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.notReloaded") is True

    # The chained pipeline as a graph: w320 hangs under w800, which hangs under w1600.
    chain = page.locator(".tree > li:has(#step-w1600) li:has(#step-w800) #step-w320")
    expect(chain).to_have_count(1)

    outputs = page.locator(".output")
    expect(outputs).to_have_count(4)
    previews = page.locator(".output img")
    for index in range(4):
        preview = previews.nth(index)
        preview.scroll_into_view_if_needed()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=preview.element_handle()
        )
    expect(page.locator(".output", has_text="w320")).to_contain_text("320×")
    expect(page.locator(".output", has_text="w800-webp")).to_contain_text("webp")
    screenshot(page, "job-succeeded")

    # A preview opens as the image itself; the download link saves the file.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download w320").click()
    assert download.value.suggested_filename == f"{job_id}-w320.jpg"
    page.locator(".output", has_text="w800-webp").locator("a.preview").click()
    expect(page).to_have_url(re.compile(rf"/console/jobs/{job_id}/outputs/w800-webp$"))
    screenshot(page, "preview-opened")


def test_the_jobs_list_filters_pages_and_follows_running_jobs(
    site: Site, fixtures_dir: Path
) -> None:
    page = site.page()
    job_id = create_job(page, fixtures_dir / "rocket.jpg", "thumbnail")
    page.goto("/console")
    page.evaluate("window.notReloaded = true")
    row = page.locator("tr", has=page.get_by_role("link", name=job_id))
    expect(row).to_contain_text("succeeded", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.notReloaded") is True
    expect(row).to_contain_text("1: resize")
    screenshot(page, "jobs")

    page.get_by_label("Status").select_option("failed")
    page.wait_for_url(re.compile(r"status=failed"))
    expect(page.get_by_role("link", name=job_id)).to_have_count(0)
    page.get_by_label("Status").select_option("succeeded")
    page.wait_for_url(re.compile(r"status=succeeded"))
    expect(page.get_by_role("link", name=job_id)).to_have_count(1)

    # Pages of one job each: the first two jobs' ids differ, and "Next page" leads on.
    page.goto("/console?limit=1")
    first = page.locator("table.jobs a.mono").first.inner_text()
    page.get_by_role("link", name="Next page").click()
    expect(page.locator("table.jobs a.mono").first).not_to_have_text(first)


def test_an_invalid_pipeline_is_refused_inline_naming_the_step(
    site: Site, fixtures_dir: Path
) -> None:
    page = site.page()
    page.goto("/console/new")
    page.get_by_label("Choose an image").set_input_files(fixtures_dir / "rocket.jpg")
    page.get_by_label("Pipeline (JSON").fill(
        '[{"id": "a", "action": "resize", "width": 100}, '
        '{"id": "b", "action": "resize", "width": 0}]'
    )
    page.get_by_role("button", name="Create and run").click()
    error = page.locator("#pipeline-error")
    expect(error).to_have_text("pipeline[1].width must be 1..16384 (invalid_field)")
    expect(page.get_by_label("Pipeline (JSON")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "new-job-invalid")
    page.get_by_label("Pipeline (JSON").fill("[{")
    page.get_by_role("button", name="Create and run").click()
    expect(error).to_contain_text("not valid JSON")
    assert page.url.endswith("/console/new")


def test_the_console_works_on_a_phone(site: Site) -> None:
    page = site.page(phone=True)
    page.goto("/console")
    # No sideways scrolling: the table turns into cards.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "jobs-phone")
    page.goto("/console/new")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "new-job-phone")


def test_another_job_id_is_a_404_page(site: Site) -> None:
    page = site.page()
    response = page.goto("/console/jobs/no-such-job")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    screenshot(page, "not-found")


def test_docs_is_an_interactive_reference_served_offline(site: Site) -> None:
    page = site.page()
    page.goto("/docs")
    operation = page.locator(".opblock-summary", has_text="/healthz")
    expect(operation).to_be_visible(timeout=15_000)
    operation.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        "200", timeout=10_000
    )
    screenshot(page, "docs")


def test_a_jobs_webhook_deliveries_show_each_attempt(
    site: Site, fixtures_dir: Path, receiver: str
) -> None:
    page = site.page()
    page.goto("/console/new")
    page.get_by_label("Choose an image").set_input_files(fixtures_dir / "rocket.jpg")
    page.get_by_label("Webhook URL").fill(receiver)
    page.get_by_role("button", name="Create and run").click()
    page.wait_for_url(re.compile(r"/console/jobs/[^/]+$"))

    expect(page.locator("#webhook-state")).to_have_text("delivered", timeout=JOB_TIMEOUT_MS)
    rows = page.locator("table.deliveries tbody tr")
    expect(rows).to_have_count(2)
    # The refused first attempt, with the time of the next; then the one that got through.
    expect(rows.nth(0).locator("td").nth(2)).to_have_text("503")
    expect(rows.nth(0).locator("td").nth(5)).to_contain_text("UTC")
    expect(rows.nth(1).locator("td").nth(2)).to_have_text("200")
    screenshot(page, "job-webhook-deliveries")


def test_the_pages_policy_refuses_anything_from_another_origin(site: Site) -> None:
    """The defence behind "same origin only": a page that tried to load from elsewhere (an
    image, a script, a stylesheet, a fetch) is stopped by its Content-Security-Policy before
    any request leaves the browser."""
    page = site.page()
    page.goto("/console")
    failed: dict[str, str | None] = {}
    page.on("requestfailed", lambda request: failed.update({request.url: request.failure}))
    refused = page.evaluate(
        """async () => {
            const seen = [];
            document.addEventListener(
                "securitypolicyviolation", e => seen.push(e.effectiveDirective));
            const img = document.createElement("img"); img.src = "http://127.0.0.2:9/x.png";
            const script = document.createElement("script"); script.src = "http://127.0.0.2:9/x.js";
            const link = document.createElement("link"); link.rel = "stylesheet";
            link.href = "http://127.0.0.2:9/x.css";
            document.body.append(img, script, link);
            const inline = document.createElement("script"); inline.textContent = "window.ran = 1";
            document.body.append(inline);
            await fetch("http://127.0.0.2:9/x").catch(() => null);
            await new Promise(resolve => setTimeout(resolve, 300));
            return {seen: seen.sort(), ran: window.ran === 1};
        }"""
    )
    assert refused == {
        "seen": ["connect-src", "img-src", "script-src-elem", "script-src-elem", "style-src-elem"],
        "ran": False,
    }
    # Playwright sees the attempts, and the browser failed each one before it left.
    foreign = "http://127.0.0.2:9/"
    # (The fetch is refused before it is even a request.)
    assert failed == {f"{foreign}{name}": "csp" for name in ("x.png", "x.js", "x.css")}
    recorder = site.recorders[-1]
    recorder.requests = [url for url in recorder.requests if not url.startswith(foreign)]
    # The browser reported each refusal; they were provoked here, so they are not failures.
    assert any("Content Security Policy" in error for error in recorder.errors)
    recorder.errors.clear()
