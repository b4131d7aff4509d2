"""What only the PostgreSQL store has: migrations, and connection failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from pixelflow.adapters.store.connections import ConnectionPool
from pixelflow.adapters.store.migrations import migrate
from pixelflow.adapters.store.postgres import PostgresStore
from pixelflow.adapters.store.schema import available
from pixelflow.adapters.store.statements import Statement
from pixelflow.core.errors import DatabaseUnavailable
from tests.contract.store.helpers import make_job
from tests.support.postgres import temporary_database

VERSIONS = [m.version for m in available()]


def test_the_package_ships_its_migrations() -> None:
    assert VERSIONS[0] == "0001_jobs"
    assert sorted(VERSIONS) == VERSIONS


async def test_migrations_apply_once() -> None:
    async with temporary_database() as dsn:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            assert await migrate(conn) == VERSIONS
            assert await migrate(conn) == []
            recorded = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            assert [r["version"] for r in recorded] == VERSIONS
        finally:
            await conn.close()


async def test_concurrent_migrations_apply_once() -> None:
    async with temporary_database() as dsn:
        first, second = [await asyncpg.connect(dsn, timeout=10) for _ in range(2)]
        try:
            results = await asyncio.gather(migrate(first), migrate(second))
            assert sorted(results) == [[], VERSIONS]
        finally:
            await first.close()
            await second.close()


async def test_open_migrates_a_fresh_database() -> None:
    async with temporary_database() as dsn:
        store = await PostgresStore.open(dsn, max_size=2)
        try:
            job = await store.create_job(make_job())
            assert await store.get_job(job.id) == job
        finally:
            await store.close()


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://postgres@127.0.0.1:1/pixelflow",  # nothing listens on port 1
        "postgresql://postgres@127.0.0.1:5432/pixelflow_no_such_database",
    ],
    ids=["unreachable", "missing-database"],
)
async def test_an_unusable_dsn_is_database_unavailable(dsn: str) -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        await PostgresStore.open(dsn, connect_timeout=5)

    assert caught.value.code == "database_unavailable"
    assert caught.value.message == "cannot connect to PostgreSQL"  # no driver text


async def test_a_released_connection_is_reused_as_it_was_left() -> None:
    """No reset query on release (that round trip is what the pool saves): the store keeps
    no session state, so the next user finds the same session."""
    async with _fresh_pool(max_size=2) as pool:
        async with pool.acquire() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("SET application_name = 'marker'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend
            assert await conn.fetchval("SHOW application_name") == "marker"


async def test_a_connection_left_inside_a_transaction_is_dropped() -> None:
    async with _fresh_pool(max_size=1) as pool:
        async with pool.acquire() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("BEGIN")  # a transaction left open, as by a bug
            await conn.execute("CREATE TABLE left_behind (x int)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != backend
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('left_behind')") is None


async def test_a_connection_whose_query_was_cancelled_is_dropped() -> None:
    """Its protocol state is unknown (the cancellation is still on its way to the server):
    the next user gets another connection that answers at once."""
    async with _fresh_pool(max_size=1) as pool:
        entered = asyncio.Event()

        async def sleeper() -> None:
            async with pool.acquire() as conn:
                entered.set()
                await conn.execute("SELECT pg_sleep(30)")

        task = asyncio.create_task(sleeper())
        await entered.wait()
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(10), pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1


async def test_an_error_the_server_reports_keeps_the_connection() -> None:
    async with _fresh_pool(max_size=1) as pool:
        with pytest.raises(asyncpg.PostgresError):
            async with pool.acquire() as conn:
                backend = await conn.fetchval("SELECT pg_backend_pid()")
                await conn.execute("SELECT 1 / 0")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend


async def test_a_full_pool_waits_then_times_out() -> None:
    async with _fresh_pool(max_size=1, acquire_timeout=0.3) as pool:
        async with pool.acquire():
            with pytest.raises(TimeoutError):
                async with pool.acquire():
                    pass
        async with pool.acquire() as conn:  # free again once given back
            assert await conn.fetchval("SELECT 1") == 1


async def test_a_store_whose_pool_is_exhausted_is_database_unavailable() -> None:
    async with temporary_database() as dsn:
        store = await PostgresStore.open(dsn, max_size=1, connect_timeout=0.3)
        try:
            async with store._transaction():
                with pytest.raises(DatabaseUnavailable):
                    await store.get_job("nope")
            assert await store.get_job("nope") is None
        finally:
            await store.close()


@asynccontextmanager
async def _fresh_pool(
    *, max_size: int, acquire_timeout: float = 10
) -> AsyncIterator[ConnectionPool]:
    """The store's pool on a database of its own, closed (and the database dropped) after."""
    async with temporary_database() as dsn:

        async def connect() -> Any:
            return await asyncpg.connect(dsn)

        pool = ConnectionPool(connect, max_size=max_size, acquire_timeout=acquire_timeout)
        try:
            yield pool
        finally:
            await pool.close()


async def test_a_connection_killed_inside_a_transaction_is_database_unavailable() -> None:
    """The rollback on the way out fails too (its connection is gone): that second error must
    not hide the outage, or a PostgreSQL restart reaches the worker as a traceback."""
    async with temporary_database() as dsn:
        store = await PostgresStore.open(dsn, max_size=1)
        killer = await asyncpg.connect(dsn)
        try:
            with pytest.raises(DatabaseUnavailable):
                async with store._transaction() as conn:
                    backend = (await conn.fetchrow(_backend_pid()))["pid"]  # type: ignore[index]
                    await killer.execute("SELECT pg_terminate_backend($1)", backend)
                    await conn.fetchrow(_backend_pid())
            await store.create_job(make_job())  # a fresh connection serves the next call
        finally:
            await killer.close()
            await store.close()


def _backend_pid() -> Statement:
    return Statement("SELECT pg_backend_pid() AS pid", ())
