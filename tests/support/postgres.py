"""Throwaway PostgreSQL databases: each test session gets its own, dropped at the end.

The server is the machine's (127.0.0.1:5432, user postgres); ``PIXELFLOW_TEST_PG_DSN``
overrides the admin DSN used to create and drop databases.

In a conftest::

    from tests.support.postgres import database_fixture

    pg_dsn = database_fixture()  # session-scoped fixture yielding a fresh database's DSN
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_TIMEOUT = 30.0

T = TypeVar("T")


def admin_dsn() -> str:
    return os.environ.get("PIXELFLOW_TEST_PG_DSN", DEFAULT_ADMIN_DSN)


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _database_of(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


async def create_database(prefix: str = "pixelflow_test") -> str:
    """Create an empty database with a unique name; its DSN."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_dsn(), timeout=_TIMEOUT)
    try:
        # Identifiers cannot be bound as parameters; the name is ours and [a-z0-9_] only.
        await conn.execute(f'CREATE DATABASE "{name}"', timeout=_TIMEOUT)
    finally:
        await conn.close()
    return _with_database(admin_dsn(), name)


async def drop_database(dsn: str) -> None:
    """Drop the database ``dsn`` names, disconnecting whoever is still in it."""
    name = _database_of(dsn)
    conn = await asyncpg.connect(admin_dsn(), timeout=_TIMEOUT)
    try:
        # WITH (FORCE) terminates the remaining connections first (PostgreSQL 13+).
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=_TIMEOUT)
    finally:
        await conn.close()


@asynccontextmanager
async def temporary_database(prefix: str = "pixelflow_test") -> AsyncIterator[str]:
    dsn = await create_database(prefix)
    try:
        yield dsn
    finally:
        await drop_database(dsn)


def run_sync(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running loop.

    A fresh thread with its own loop: session fixtures are first requested from whatever
    context needs them, sometimes an async fixture whose loop is already running.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine()))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="pg-test-admin")
    thread.start()
    thread.join(_TIMEOUT * 2)
    if thread.is_alive():
        raise TimeoutError("PostgreSQL admin operation did not finish")
    if failure:
        raise failure[0]
    return result[0]


def database_fixture(
    *, scope: Any = "session", prefix: str = "pixelflow_test"
) -> Callable[..., Any]:
    """A pytest fixture yielding the DSN of a fresh database, dropped at teardown."""

    @pytest.fixture(scope=scope)
    def _database() -> Iterator[str]:
        dsn = run_sync(lambda: create_database(prefix))
        try:
            yield dsn
        finally:
            run_sync(lambda: drop_database(dsn))

    return _database
