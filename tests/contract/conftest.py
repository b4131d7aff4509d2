"""Fixtures shared by the contract suites."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.redis import RedisRun


@pytest.fixture
async def redis_run() -> AsyncIterator[RedisRun]:
    """This test's slice of the test Redis: its own key prefix and queue name, cleaned after."""
    run = RedisRun()
    await run.check()
    yield run
    await run.cleanup()
