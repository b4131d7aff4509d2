"""SQLite store, the embedded default: one file, one connection, one writer at a time.

Times are stored as integer microseconds since the epoch (exact, and ordered like the
times themselves); JSON columns as text. Queries run on aiosqlite's thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from pixelflow.adapters.store.base import SqlStore
from pixelflow.adapters.store.codec import TIME_COLUMNS, Row, from_micros, to_micros
from pixelflow.adapters.store.schema import available
from pixelflow.adapters.store.statements import Statement
from pixelflow.core.errors import DatabaseUnavailable

_URL_PREFIX = "sqlite:///"
_PLACEHOLDER = re.compile(r"\$(\d+)")


def sqlite_path(location: str | Path) -> Path:
    """The file named by a ``sqlite:///path`` URL (``sqlite:////abs/path`` when absolute,
    SQLAlchemy's convention; ``~`` is expanded), or by a plain path. The one place that parses
    SQLite URLs."""
    if isinstance(location, Path):
        return location
    if location.startswith(_URL_PREFIX):
        location = location.removeprefix(_URL_PREFIX)
    elif "://" in location:
        raise ValueError(f"not a sqlite:/// URL: {location!r}")
    if not location:
        raise ValueError("the SQLite URL names no file")
    return Path(location).expanduser()


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__()
        self._conn = conn
        self._statements = _SqliteConnection(conn)
        # One connection serves every task: without this lock, a statement from one task
        # could run inside another task's open transaction.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, location: str | Path, *, busy_timeout: float = 5.0) -> SqliteStore:
        """Open (creating if needed) the database file and its schema."""
        path = sqlite_path(location)
        try:
            await asyncio.to_thread(_create_private, path)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseUnavailable(f"cannot open the SQLite database {path}") from exc
        try:
            conn.row_factory = sqlite3.Row
            with _unavailable_on_error():
                # Other processes (a CLI next to `serve`) wait for the write lock this long.
                await conn.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
                # WAL: readers never block the writer. NORMAL sync is durable across crashes
                # of the process in WAL mode, and skips an fsync per commit.
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = NORMAL")
                await conn.execute("PRAGMA foreign_keys = ON")
                await _migrate(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def close(self) -> None:
        await self._finish_writes()
        async with self._lock:
            await self._conn.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_SqliteConnection]:
        async with self._lock:
            with _unavailable_on_error():
                yield self._statements

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_SqliteConnection]:
        async with self._lock:
            with _unavailable_on_error():
                async with _immediate(self._conn):
                    yield self._statements


class _SqliteConnection:
    """Runs the shared statements: ``$n`` → ``?n``, datetimes ↔ integer microseconds."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, statement: Statement) -> list[Row]:
        args = [_to_sqlite(a) for a in statement.args]
        rows = await self._conn.execute_fetchall(_to_qmark(statement.sql), args)
        return [_decode_row(row) for row in rows]

    async def fetchrow(self, statement: Statement) -> Row | None:
        rows = await self.fetch(statement)
        return rows[0] if rows else None

    async def execute(self, statement: Statement) -> None:
        await self.fetch(statement)

    async def execute_batch(self, statements: Sequence[Statement]) -> None:
        if len(statements) == 1:
            await self.execute(statements[0])
            return
        rows = [[_to_sqlite(a) for a in statement.args] for statement in statements]
        # Outside a transaction each row would commit on its own: all or none instead.
        async with _immediate(self._conn):
            await self._conn.executemany(_to_qmark(statements[0].sql), rows)

    async def fetch_batch(self, statements: Sequence[Statement]) -> list[Row]:
        if len(statements) == 1:
            return await self.fetch(statements[0])
        async with _immediate(self._conn):
            return [row for statement in statements for row in await self.fetch(statement)]


_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
)
"""


async def _migrate(conn: aiosqlite.Connection) -> None:
    """Apply the SQLite migrations not yet recorded, each in its own transaction."""
    await conn.execute(_CREATE_MIGRATIONS_TABLE)
    rows = await conn.execute_fetchall("SELECT version FROM schema_migrations")
    done = {row[0] for row in rows}
    for migration in available("sqlite"):
        if migration.version in done:
            continue
        # BEGIN IMMEDIATE: two processes opening one file at once apply each version once
        # (the loser waits on busy_timeout, then finds the version recorded).
        async with _immediate(conn):
            again = await conn.execute_fetchall(
                "SELECT 1 FROM schema_migrations WHERE version = ?", [migration.version]
            )
            if not again:
                for statement in _statements(migration.sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    [migration.version, to_micros(datetime.now(UTC))],
                )


@asynccontextmanager
async def _immediate(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    """A write transaction around the block: committed when it ends cleanly, else rolled back.

    IMMEDIATE takes the write lock up front, so a compare-and-set never has to upgrade a read
    lock halfway through (which fails with SQLITE_BUSY)."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite may already have rolled back by itself (e.g. on a full disk).
        with suppress(sqlite3.Error):
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit our transaction)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:60]!r}")
    return statements


def _to_sqlite(value: object) -> object:
    return to_micros(value) if isinstance(value, datetime) else value


@functools.lru_cache(maxsize=128)
def _to_qmark(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


def _decode_row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        key: from_micros(row[key]) if key in TIME_COLUMNS and row[key] is not None else row[key]
        for key in row.keys()  # noqa: SIM118 - sqlite3.Row is not iterable by key
    }


@contextmanager
def _unavailable_on_error() -> Iterator[None]:
    # OperationalError covers "database is locked" (past busy_timeout), "disk I/O error",
    # "unable to open database file"; the message never carries the driver's text.
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise DatabaseUnavailable("the SQLite database is unavailable") from exc


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only, before SQLite does (with the
    umask's usual 0644): SQLite gives its ``-wal`` and ``-shm`` files the database's mode."""
    if path.parent != path and not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if str(path) == ":memory:" or path.exists():
        return
    with suppress(FileExistsError):  # another process created it first
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
