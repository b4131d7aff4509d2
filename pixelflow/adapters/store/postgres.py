"""PostgreSQL store (production): pooled asyncpg connections, JSONB documents, timestamptz
times."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from pixelflow.adapters.store.base import SqlStore
from pixelflow.adapters.store.codec import Row
from pixelflow.adapters.store.connections import ConnectionPool
from pixelflow.adapters.store.migrations import migrate as apply_migrations
from pixelflow.adapters.store.statements import Statement
from pixelflow.core.errors import DatabaseUnavailable

# Failures that mean "the database cannot be used right now", as opposed to bugs: no
# connection (08xxx, sockets, timeouts), a server shutting down or cancelling statements
# (57xxx), out of connections or disk (53xxx), and a DSN naming a missing database or role.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
)


class PostgresStore(SqlStore):
    dialect = "postgresql"

    def __init__(self, pool: ConnectionPool) -> None:
        super().__init__()
        self._pool = pool

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        max_size: int = 10,
        migrate: bool = True,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> PostgresStore:
        """Open a pool on ``dsn`` and, unless told not to, apply pending migrations.

        Connections are opened on demand (no floor: nothing reconnects in the background
        while the server is down); one is opened here to check the server is reachable."""

        async def connect() -> Any:
            return await asyncpg.connect(
                dsn, timeout=connect_timeout, command_timeout=command_timeout
            )

        pool = ConnectionPool(connect, max_size=max_size, acquire_timeout=connect_timeout)
        try:
            with _unavailable_on_error("cannot connect to PostgreSQL"):
                async with pool.acquire() as conn:
                    if migrate:
                        await apply_migrations(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def close(self) -> None:
        await self._finish_writes()
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_PostgresConnection]:
        with _unavailable_on_error():
            async with self._pool.acquire() as conn:
                with _unavailable_if_closed(conn):
                    yield _PostgresConnection(conn)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_PostgresConnection]:
        # READ COMMITTED is what the compare-and-sets need: an UPDATE that waited for a
        # concurrent one re-checks its WHERE clause against the committed row.
        with _unavailable_on_error():
            async with self._pool.acquire() as conn:
                with _unavailable_if_closed(conn):
                    async with conn.transaction():
                        yield _PostgresConnection(conn)


class _PostgresConnection:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, statement: Statement) -> list[Row]:
        return cast(list[Row], await self._conn.fetch(statement.sql, *statement.args))

    async def fetchrow(self, statement: Statement) -> Row | None:
        return cast(Row | None, await self._conn.fetchrow(statement.sql, *statement.args))

    async def execute(self, statement: Statement) -> None:
        await self._conn.execute(statement.sql, *statement.args)

    async def execute_batch(self, statements: Sequence[Statement]) -> None:
        if len(statements) == 1:
            await self.execute(statements[0])
            return
        # asyncpg sends every row's bind and execute, then one sync: one round trip, and the
        # rows commit together or not at all.
        await self._conn.executemany(statements[0].sql, [s.args for s in statements])

    async def fetch_batch(self, statements: Sequence[Statement]) -> list[Row]:
        if len(statements) == 1:
            return await self.fetch(statements[0])
        # The same pipeline as executemany's, keeping the rows: one round trip, all or none.
        rows = await self._conn.fetchmany(statements[0].sql, [s.args for s in statements])
        return cast(list[Row], rows)


@contextmanager
def _unavailable_if_closed(conn: Any) -> Iterator[None]:
    """A driver error on a connection that has closed meanwhile is the outage that closed it.

    A backend terminated mid-transaction (a restart, ``pg_terminate_backend``) does not always
    surface as a connection error: the next statement can find the protocol in a state it did
    not expect (``InternalClientError``), and the rollback on the way out a closed connection
    (``InterfaceError``), depending on when the termination arrives."""
    try:
        yield
    except (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError) as exc:
        if conn.is_closed():
            raise DatabaseUnavailable("PostgreSQL is unavailable") from exc
        raise


@contextmanager
def _unavailable_on_error(message: str = "PostgreSQL is unavailable") -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        # The driver's text stays in __cause__ for the logs, never in the message.
        raise DatabaseUnavailable(message) from exc
    except asyncpg.InterfaceError as exc:
        # A transaction whose connection died under it fails again on its way out (the
        # rollback finds the connection closed), and that second error hides the outage.
        if isinstance(exc.__context__, _UNAVAILABLE):
            raise DatabaseUnavailable(message) from exc.__context__
        raise
