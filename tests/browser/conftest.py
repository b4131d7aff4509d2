"""Browser tests: Playwright's Python package driving Debian's chromium (never a downloaded
browser) against real ``pixelflow serve`` / ``pixelflow api`` processes.

Every page a test opens records the requests it makes: at teardown all of them must have gone
to the server's own origin, and the browser must have reported no error (a Content-Security-
Policy violation is one). Screenshots land in ``test-artifacts/console/``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from tests.support.processes import PixelflowProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "console"
CHROMIUM = os.environ.get("PIXELFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}


# Per module, not per session: sync Playwright keeps an event loop running in this thread while
# it is open, which the asyncio tests of other modules cannot share.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # caret="initial": hiding the caret injects a style element, which the CSP (rightly) refuses.
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, caret="initial")


class Recorder:
    """Every request a browser context makes, and every error its pages report."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.origin = origin
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.pages = 0
        context.on("request", lambda request: self.requests.append(request.url))
        context.on("page", self.watch)

    def watch(self, page: Page) -> None:
        self.pages += 1
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console {message.type} at {message.location}: {message.text}")
                if message.type == "error" and not _expected(message.text)
                else None
            ),
        )

    def check(self) -> None:
        foreign = [url for url in self.requests if _origin(url) != self.origin]
        assert self.requests or not self.pages, "pages opened, but no request recorded"
        assert not foreign, f"requests to another origin: {foreign}"
        assert not self.errors, self.errors


# Errors a test provokes on purpose (a 4xx page is logged by the browser as a failed load).
_EXPECTED = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")


def _expected(text: str) -> bool:
    return bool(_EXPECTED.search(text))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in {"data", "blob", "about"}:
        return "same"  # no network request
    return f"{parts.scheme}://{parts.netloc}"


class Site:
    """A running PixelFlow and a way to open recorded browser contexts on it."""

    def __init__(self, url: str, browser: Browser) -> None:
        self.url = url
        self.browser = browser
        self.recorders: list[Recorder] = []
        self.contexts: list[BrowserContext] = []

    def context(
        self, *, phone: bool = False, headers: dict[str, str] | None = None
    ) -> BrowserContext:
        context = self.browser.new_context(
            base_url=self.url,
            viewport=PHONE if phone else DESKTOP,
            accept_downloads=True,
            extra_http_headers=headers,
        )
        self.contexts.append(context)
        self.recorders.append(Recorder(context, self.url))
        return context

    def page(self, *, phone: bool = False, headers: dict[str, str] | None = None) -> Page:
        return self.context(phone=phone, headers=headers).new_page()

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        for recorder in self.recorders:
            recorder.check()


@contextlib.contextmanager
def running_serve(tmp: Path, **env: str) -> Iterator[str]:
    """``pixelflow serve`` on a free port; its URL."""
    port = free_port()
    process = PixelflowProcess(
        ["serve", "--port", str(port), "--data-dir", str(tmp / "data")],
        env={"PIXELFLOW_API_METRICS_ADDR": "", "PIXELFLOW_LOCAL_SOURCE_ROOT": str(tmp), **env},
        log_path=tmp / "serve.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        process.wait_http(f"{url}/healthz")
        yield url
    finally:
        process.stop()


@pytest.fixture
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    """Browser contexts on the URL the test module's ``server_url`` fixture gives. The server
    comes first, so that it stops after the browser (whose loop must be gone by then)."""
    url: str = request.getfixturevalue("server_url")
    browser: Browser = request.getfixturevalue("browser")
    opened = Site(url, browser)
    yield opened
    opened.close()
