"""Confinement of ``local_file`` sources to their root, on a real filesystem."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from pixelflow.adapters.storage import local_source
from pixelflow.adapters.storage.local_source import LocalSourceRoot
from pixelflow.core.errors import InvalidInput, NotFound


@pytest.fixture(autouse=True, params=["pinned", "walked"])
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the kernel resolving an open file (Linux) and with the portable
    walk in Python that other systems use."""
    if request.param == "walked":
        monkeypatch.setattr(local_source, "_can_pin_files", lambda: False)
    return str(request.param)


def test_linux_resolves_sources_through_open_files(root: Path, resolution: str) -> None:
    pinned = resolution == "pinned" and sys.platform == "linux"
    assert LocalSourceRoot(root)._pinned is pinned


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.jpg").write_bytes(b"not yours")
    return directory


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "root"
    (directory / "photos" / "2024").mkdir(parents=True)
    (directory / "photo.jpg").write_bytes(b"jpeg bytes")
    (directory / "photos" / "2024" / "beach.png").write_bytes(b"png bytes!")
    return directory


@pytest.fixture
def sources(root: Path) -> LocalSourceRoot:
    return LocalSourceRoot(root)


async def test_a_file_inside_is_resolved_sized_and_read(
    sources: LocalSourceRoot, root: Path
) -> None:
    assert sources.resolve("photos/2024/beach.png") == (root / "photos/2024/beach.png").resolve()
    assert await sources.size("photos/2024/beach.png") == 10
    assert await sources.read("photos/2024/beach.png") == b"png bytes!"
    assert await sources.read("./photo.jpg") == b"jpeg bytes"


async def test_missing_files_and_directories(sources: LocalSourceRoot) -> None:
    assert await sources.size("nope.jpg") is None
    assert await sources.size("photo.jpg/child") is None  # a file used as a directory
    assert await sources.size("photos") is None  # a directory is not a source
    for relative in ("nope.jpg", "photos"):
        with pytest.raises(NotFound) as caught:
            await sources.read(relative)
        assert caught.value.code == "object_not_found"


@pytest.mark.parametrize(
    "relative",
    [
        pytest.param("", id="empty"),
        pytest.param(".", id="the-root-itself"),
        pytest.param("./", id="the-root-with-slash"),
        pytest.param("../outside/secret.jpg", id="parent"),
        pytest.param("photos/../../outside/secret.jpg", id="parent-deeper"),
        pytest.param("photos/..", id="parent-staying-inside"),
        pytest.param("photo.jpg\x00.png", id="nul-byte"),
    ],
)
async def test_paths_that_escape_are_refused(
    sources: LocalSourceRoot, outside: Path, relative: str
) -> None:
    await _assert_refused(sources, relative)


async def test_absolute_paths_are_refused_even_inside_the_root(
    sources: LocalSourceRoot, root: Path, outside: Path
) -> None:
    await _assert_refused(sources, str(outside / "secret.jpg"))
    await _assert_refused(sources, str(root / "photo.jpg"))


async def test_a_symlinked_file_pointing_outside_is_refused(
    sources: LocalSourceRoot, root: Path, outside: Path
) -> None:
    (root / "innocent.jpg").symlink_to(outside / "secret.jpg")

    await _assert_refused(sources, "innocent.jpg")


async def test_a_symlinked_directory_pointing_outside_is_refused(
    sources: LocalSourceRoot, root: Path, outside: Path
) -> None:
    (root / "photos" / "shared").symlink_to(outside, target_is_directory=True)

    await _assert_refused(sources, "photos/shared/secret.jpg")


async def test_a_dangling_symlink_pointing_outside_is_refused(
    sources: LocalSourceRoot, root: Path, outside: Path
) -> None:
    (root / "later.jpg").symlink_to(outside / "not-yet.jpg")

    await _assert_refused(sources, "later.jpg")


async def test_a_symlink_loop_is_refused(sources: LocalSourceRoot, root: Path) -> None:
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")

    await _assert_refused(sources, "loop-a")


async def test_symlinks_that_stay_inside_are_followed(sources: LocalSourceRoot, root: Path) -> None:
    (root / "latest.png").symlink_to(root / "photos" / "2024" / "beach.png")
    (root / "this-year").symlink_to(Path("photos") / "2024", target_is_directory=True)

    assert await sources.read("latest.png") == b"png bytes!"
    assert await sources.size("this-year/beach.png") == 10
    assert sources.resolve("this-year/beach.png") == (root / "photos/2024/beach.png").resolve()


async def test_a_symlinked_root_is_fine(root: Path, tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "root-link"
    link.symlink_to(root, target_is_directory=True)
    sources = LocalSourceRoot(link)

    assert await sources.read("photo.jpg") == b"jpeg bytes"
    await _assert_refused(sources, "../outside/secret.jpg")


async def _assert_refused(sources: LocalSourceRoot, relative: str) -> None:
    with pytest.raises(InvalidInput) as resolving:
        sources.resolve(relative)
    with pytest.raises(InvalidInput):
        await sources.size(relative)
    with pytest.raises(InvalidInput):
        await sources.read(relative)
    error = resolving.value
    assert error.code == "invalid_source_path"
    assert error.message.startswith("object_key ")  # names the field at fault ...
    assert "/tmp" not in error.message and "pytest" not in error.message  # ... not where


def test_private_paths_inside_the_root_are_refused_however_they_are_named(root: Path) -> None:
    data = root / ".pixelflow"
    (data / "objects").mkdir(parents=True)
    (data / "signing.key").write_bytes(b"key")
    (data / "objects" / "out.jpg").write_bytes(b"someone's output")
    os.symlink(data, root / "innocent")
    os.symlink(data / "signing.key", root / "photo-link.jpg")
    sources = LocalSourceRoot(root, private=[data])
    for relative in (
        ".pixelflow/signing.key",
        ".pixelflow/objects/out.jpg",
        ".pixelflow",
        "./.pixelflow/./signing.key",
        "innocent/signing.key",
        "photo-link.jpg",
    ):
        with pytest.raises(InvalidInput) as caught:
            sources.resolve(relative)
        assert caught.value.code == "invalid_source_path", relative
    assert sources.resolve("photo.jpg") == (root / "photo.jpg").resolve()


async def test_the_worker_read_checks_again(root: Path) -> None:
    data = root / ".pixelflow"
    data.mkdir()
    (data / "signing.key").write_bytes(b"key")
    sources = LocalSourceRoot(root, private=[data])
    assert await sources.read("photo.jpg") == b"jpeg bytes"
    # Checked at create, then swapped for a link into the data directory before the read.
    (root / "photo.jpg").unlink()
    os.symlink(data / "signing.key", root / "photo.jpg")
    with pytest.raises(InvalidInput):
        await sources.read("photo.jpg")


def test_overlong_keys_are_refused_before_the_filesystem(sources: LocalSourceRoot) -> None:
    with pytest.raises(InvalidInput) as caught:
        sources.resolve("a/" * 600)
    assert caught.value.code == "invalid_source_path"


def test_a_private_file_that_appears_later_is_refused_by_identity(root: Path) -> None:
    # A missing private path skips the ancestors' stat: it must not be remembered as missing,
    # and a missing one listed first must not hide one that exists. A hard link is another
    # name for the same file, which only the device-and-inode comparison recognises.
    database = root / "pixelflow.db"
    sources = LocalSourceRoot(root, private=[root / "never-made", database])
    assert sources.resolve("photo.jpg") == (root / "photo.jpg").resolve()
    database.write_bytes(b"SQLite format 3")
    os.link(database, root / "copy.jpg")
    with pytest.raises(InvalidInput) as caught:
        sources.resolve("copy.jpg")
    assert caught.value.code == "invalid_source_path"
    assert sources.resolve("photo.jpg") == (root / "photo.jpg").resolve()


async def test_the_root_is_resolved_once_so_a_repointed_root_is_not_followed(
    root: Path, tmp_path: Path
) -> None:
    # Resolving the root once per process is what keeps the check cheap; re-pointing the link
    # while the service runs must not move the sources (restart to move them).
    link = tmp_path / "root-link"
    link.symlink_to(root, target_is_directory=True)
    sources = LocalSourceRoot(link)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.jpg").write_bytes(b"other bytes")
    link.unlink()
    link.symlink_to(elsewhere, target_is_directory=True)

    assert await sources.read("photo.jpg") == b"jpeg bytes"
    assert sources.resolve("photo.jpg") == (root / "photo.jpg").resolve()


async def test_a_root_inside_a_private_directory_has_no_sources(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "photo.jpg").write_bytes(b"jpeg bytes")
    # Both named through links: their real paths still put the root inside the data.
    (tmp_path / "images-link").symlink_to(data / "images", target_is_directory=True)
    (tmp_path / "data-link").symlink_to(data, target_is_directory=True)
    sources = LocalSourceRoot(tmp_path / "images-link", private=[tmp_path / "data-link"])

    await _assert_refused(sources, "photo.jpg")


async def test_a_fifo_is_not_a_source_and_never_blocks(
    sources: LocalSourceRoot, root: Path
) -> None:
    os.mkfifo(root / "pipe.jpg")
    assert await asyncio.wait_for(sources.size("pipe.jpg"), 10) is None
    with pytest.raises(NotFound):
        await asyncio.wait_for(sources.read("pipe.jpg"), 10)


async def test_a_pinned_file_read_is_the_file_checked(
    root: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a pinned file survives a swap between the check and the read (Linux, which the
    # service runs on); the walk elsewhere trusts the root instead.
    monkeypatch.setattr(local_source, "_can_pin_files", lambda: True)
    sources = LocalSourceRoot(root)
    checked_path = local_source._pinned_path

    def swapped_after_the_check(descriptor: int) -> str:
        path = checked_path(descriptor)
        # An attacker who can write under the root swaps the file for a link leading out.
        (root / "photo.jpg").unlink()
        (root / "photo.jpg").symlink_to(outside / "secret.jpg")
        return path

    monkeypatch.setattr(local_source, "_pinned_path", swapped_after_the_check)
    assert await sources.read("photo.jpg") == b"jpeg bytes"
