"""One store fixture, parametrised over every implementation of the Store Protocol."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from pixelflow.adapters.store.base import SqlStore
from pixelflow.adapters.store.postgres import PostgresStore
from pixelflow.adapters.store.sqlite import SqliteStore
from tests.support.postgres import database_fixture

pg_dsn = database_fixture(prefix="pixelflow_store")


class Database:
    """Where one implementation keeps its data, and a side door for the tests to look in."""

    def __init__(self, kind: str, location: str) -> None:
        self.kind = kind
        self.location = location

    async def open(self) -> SqlStore:
        if self.kind == "sqlite":
            return await SqliteStore.open(self.location)
        store = await PostgresStore.open(self.location, max_size=4)
        # One database serves the whole session; each test starts from empty tables.
        await self._postgres_scalar(
            "TRUNCATE jobs, usage_logs, webhook_events, webhook_deliveries, webhook_secrets,"
            " api_keys, console_sessions, deployment_settings"
        )
        return store

    async def count(self, table: str) -> int:
        query = f"SELECT count(*) FROM {table}"
        if self.kind == "sqlite":
            return int(await asyncio.to_thread(self._sqlite_scalar, query))
        return int(await self._postgres_scalar(query))

    def _sqlite_scalar(self, query: str) -> Any:
        with closing(sqlite3.connect(self.location)) as conn:
            return conn.execute(query).fetchone()[0]

    async def _postgres_scalar(self, query: str) -> Any:
        conn = await asyncpg.connect(self.location, timeout=10)
        try:
            return await conn.fetchval(query)
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database("sqlite", str(tmp_path / "data" / "pixelflow.db"))
    return Database("postgres", request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def store(database: Database) -> AsyncIterator[SqlStore]:
    opened = await database.open()
    try:
        yield opened
    finally:
        await opened.close()
