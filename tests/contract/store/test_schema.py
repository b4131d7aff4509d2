"""The two SQL dialects define one schema: same migration versions, tables, columns, indexes.

SQLite's migrations restate PostgreSQL's in another dialect; nothing else would notice when a
change lands in one folder and not the other.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from pixelflow.adapters.store.postgres import PostgresStore
from pixelflow.adapters.store.schema import available
from pixelflow.adapters.store.sqlite import SqliteStore

Schema = dict[str, set[str]]


def test_both_dialects_ship_the_same_versions() -> None:
    postgres = [m.version for m in available("postgresql")]
    sqlite = [m.version for m in available("sqlite")]
    assert postgres, "no PostgreSQL migrations found in the package"
    assert sqlite == postgres


def _sqlite_schema(path: Path) -> tuple[Schema, set[str], list[str]]:
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        columns = {
            table: {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
            for table in tables
        }
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
    return columns, indexes, sorted(versions)


async def _postgres_schema(dsn: str) -> tuple[Schema, set[str], list[str]]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
        # Primary keys and unique constraints make indexes of their own; compare named ones.
        index_rows = await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            " AND indexname NOT LIKE '%_pkey'"
        )
        version_rows = await conn.fetch("SELECT version FROM schema_migrations")
    finally:
        await conn.close()
    columns: Schema = {}
    for row in rows:
        columns.setdefault(row["table_name"], set()).add(row["column_name"])
    indexes = {row["indexname"] for row in index_rows}
    return columns, indexes, sorted(row["version"] for row in version_rows)


async def test_sqlite_and_postgres_schemas_agree(tmp_path: Path, pg_dsn: str) -> None:
    sqlite_file = tmp_path / "schema.db"
    await (await SqliteStore.open(sqlite_file)).close()
    await (await PostgresStore.open(pg_dsn, max_size=1)).close()

    sqlite_columns, sqlite_indexes, sqlite_versions = _sqlite_schema(sqlite_file)
    pg_columns, pg_indexes, pg_versions = await _postgres_schema(pg_dsn)

    assert sqlite_versions == pg_versions == sorted(m.version for m in available())
    # schema_migrations' own columns differ by design (applied_at's type), the rest must not.
    assert set(sqlite_columns) == set(pg_columns)
    for table in pg_columns:
        assert sqlite_columns[table] == pg_columns[table], table
    assert sqlite_indexes == pg_indexes


async def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "again.db"
    for _ in range(2):
        await (await SqliteStore.open(path)).close()
    _, _, versions = _sqlite_schema(path)
    assert versions == sorted(m.version for m in available("sqlite"))


async def test_a_database_from_before_numbered_migrations_adopts_them(tmp_path: Path) -> None:
    """A ``serve`` data directory made by an earlier release has the tables but no versions."""
    path = tmp_path / "old.db"
    first = available("sqlite")[0]
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(first.sql)
    store = await SqliteStore.open(path)
    await store.close()
    _, _, versions = _sqlite_schema(path)
    assert versions == sorted(m.version for m in available("sqlite"))
