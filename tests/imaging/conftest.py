from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pixelflow.adapters.imaging.protocol import Imaging
from pixelflow.adapters.imaging.vips import VipsImaging


@pytest.fixture
async def imaging() -> AsyncIterator[VipsImaging]:
    adapter = VipsImaging(workers=2)
    _: Imaging = adapter  # mypy checks the adapter against the Protocol
    yield adapter
    await adapter.close()
