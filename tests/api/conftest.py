"""An API with its embedded worker, driven in-process through httpx's ASGI transport."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from pixelflow.api.app import create_app
from pixelflow.cli import start_embedded
from pixelflow.config import Role, load_settings

ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
def source_root(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A source root holding the sample images, plus a symlink that escapes it."""
    root = tmp_path / "sources"
    root.mkdir()
    for image in fixtures_dir.iterdir():
        if image.suffix != ".md":
            shutil.copyfile(image, root / image.name)
    outside = tmp_path / "secret.jpg"
    shutil.copyfile(fixtures_dir / "rocket.jpg", outside)
    os.symlink(outside, root / "escape.jpg")
    os.symlink(tmp_path, root / "escape-dir")
    return root


@pytest.fixture
async def make_client(tmp_path: Path, source_root: Path) -> AsyncIterator[ClientFactory]:
    """Build an app on the embedded defaults (tmp data dir) and a client for it."""
    async with contextlib.AsyncExitStack() as stack:

        async def factory(**env: str) -> httpx.AsyncClient:
            environ = {
                "PIXELFLOW_DATA_DIR": str(tmp_path / "data"),
                "PIXELFLOW_LOCAL_SOURCE_ROOT": str(source_root),
                "WORKER_RETRY_BACKOFF": "0.1",
                **env,
            }
            settings = load_settings(Role.SERVE, environ)
            app = create_app(settings, on_startup=start_embedded)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=settings.public_url, timeout=60
            )
            await stack.enter_async_context(client)
            return client

        yield factory


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client()
