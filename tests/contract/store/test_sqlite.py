"""What only the SQLite store has: a file named by a path or a sqlite:/// URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixelflow.adapters.store.sqlite import SqliteStore, sqlite_path
from pixelflow.core.errors import DatabaseUnavailable
from tests.contract.store.helpers import make_job


def test_urls_and_paths_name_the_file() -> None:
    assert sqlite_path("sqlite:///./data/p.db") == Path("data/p.db")
    assert sqlite_path("sqlite:////var/lib/p.db") == Path("/var/lib/p.db")
    assert sqlite_path("sqlite:///~/p.db") == Path.home() / "p.db"
    assert sqlite_path("data/p.db") == Path("data/p.db")
    assert sqlite_path(Path("/x.db")) == Path("/x.db")
    for bad in ["postgresql://host/db", "sqlite:///"]:
        with pytest.raises(ValueError):
            sqlite_path(bad)


async def test_open_creates_the_directory_and_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/pixelflow.db"
    store = await SqliteStore.open(url)
    job = await store.create_job(make_job())
    await store.close()

    reopened = await SqliteStore.open(tmp_path / "nested" / "dir" / "pixelflow.db")
    try:
        assert await reopened.get_job(job.id) == job
    finally:
        await reopened.close()


async def test_a_path_that_cannot_hold_a_database_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        await SqliteStore.open(tmp_path)  # a directory
    assert "sqlite3" not in caught.value.message.lower()
