"""Suite-wide fixtures. Infrastructure helpers live in ``tests/support``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The session's one SeaweedFS (S3) server, started on first use by any test that needs it.
from tests.support.seaweed import seaweed

__all__ = ["seaweed"]

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = Path(os.environ.get("PIXELFLOW_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES_DIR / "photo-12mp.jpg").is_file():
        pytest.fail(f"sample images not found in {FIXTURES_DIR} (set PIXELFLOW_FIXTURES)")
    return FIXTURES_DIR
