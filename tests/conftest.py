"""Suite-wide fixtures. Infrastructure helpers live in ``tests/support``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.images import write_sample_images

# The session's one SeaweedFS (S3) server, started on first use by any test that needs it.
from tests.support.seaweed import seaweed

__all__ = ["seaweed"]


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample images (see ``tests/support/images.py``), generated once per session.

    Read-only by convention: a test that changes an image copies it first."""
    return write_sample_images(tmp_path_factory.mktemp("sample-images"))
