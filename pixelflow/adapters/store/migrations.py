"""PostgreSQL schema migrations: numbered SQL files, each applied once, in order.

The files live in the top-level ``migrations/`` folder and ship inside the package through the
symlink ``pixelflow/adapters/store/sql``, so an installed PixelFlow can migrate its database.
Applied versions are recorded in ``schema_migrations``; an advisory lock makes processes that
start together migrate once.
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from pixelflow.adapters.store.schema import available

# pg_advisory_lock's key: the bytes of "pixelflw" read as a (positive) 64-bit integer.
_LOCK_KEY = 0x706978656C666C77

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(target: Any) -> list[str]:
    """Apply pending migrations through an asyncpg pool or connection; the versions applied."""
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            return await _migrate(conn)
    return await _migrate(target)


async def _migrate(conn: Any) -> list[str]:
    # A session-level lock: held across the per-file transactions below, and released by
    # PostgreSQL itself should this connection die halfway.
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version FROM schema_migrations")
        done = {row["version"] for row in rows}
        applied: list[str] = []
        for migration in available():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
                )
            applied.append(migration.version)
        return applied
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def migrate_dsn(dsn: str) -> list[str]:
    """Connect once to ``dsn`` and apply pending migrations (``pixelflow migrate``)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
