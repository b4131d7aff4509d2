"""The numbered schema migrations shipped with the package, one folder per SQL dialect.

PostgreSQL's live in the top-level ``migrations/`` folder, SQLite's twins in
``migrations/sqlite/`` under the same version names; both ship inside the package through the
symlink ``pixelflow/adapters/store/sql``. ``tests/contract/store/test_schema.py`` checks that
the two dialects define the same versions, tables, columns and indexes.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.abc import Traversable
from typing import Literal, NamedTuple

Dialect = Literal["postgresql", "sqlite"]

_FILE_NAME = re.compile(r"^(?P<number>\d{4})_[a-z0-9_]+\.sql$")


class Migration(NamedTuple):
    version: str  # the file name without ".sql", e.g. "0001_jobs"
    sql: str


def _folder(dialect: Dialect) -> Traversable:
    folder = resources.files("pixelflow.adapters.store") / "sql"
    return folder / "sqlite" if dialect == "sqlite" else folder


def available(dialect: Dialect = "postgresql") -> list[Migration]:
    """Every migration shipped for ``dialect``, in the order they apply."""
    migrations: list[Migration] = []
    numbers: set[str] = set()
    for entry in sorted(_folder(dialect).iterdir(), key=lambda e: e.name):
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        if match["number"] in numbers:
            raise RuntimeError(f"two {dialect} migrations are numbered {match['number']}")
        numbers.add(match["number"])
        migrations.append(Migration(entry.name.removesuffix(".sql"), entry.read_text("utf-8")))
    return migrations
