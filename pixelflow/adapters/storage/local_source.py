"""Source files for ``local_file`` jobs, confined to ``PIXELFLOW_LOCAL_SOURCE_ROOT``.

Paths come from API clients, so every way out of the root is refused: absolute paths, ``..``
segments and symlinks (or symlinked directories) that point outside. Symlinks that stay inside
are followed. Every way *into* a private path under the root (``serve``'s data directory,
which holds the database, the signing key and every job's outputs) is refused too: the real path
is compared by name and, for each of its ancestors, by device and inode, so a symlink, a detour
or a case variation on a case-insensitive filesystem all meet the same refusal. The check runs
at create time and again when the worker reads the file. The root itself is trusted: someone
who can write there could race a check with a rename, which only an
``openat2(RESOLVE_BENEATH)``-style API would close.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from pixelflow.core.errors import InvalidInput, NotFound, StorageUnavailable

# S3's own key limit; a longer local path would only reach the OS's ENAMETOOLONG.
MAX_OBJECT_KEY_CHARS = 1024


class LocalSourceRoot:
    def __init__(self, root: Path, *, private: Sequence[Path] = ()) -> None:
        self._root = root
        self._private = tuple(private)

    def resolve(self, relative: str) -> Path:
        """The real path of ``relative`` inside the root, or ``InvalidInput`` with code
        ``invalid_source_path``. It touches the filesystem (to follow symlinks): from async code,
        call it through ``size``/``read`` or in a thread."""
        if len(relative) > MAX_OBJECT_KEY_CHARS:
            raise _invalid(f"object_key must be at most {MAX_OBJECT_KEY_CHARS} characters")
        if "\0" in relative:
            raise _invalid("object_key must not contain NUL bytes")
        path = PurePosixPath(relative)
        if path.is_absolute():
            raise _invalid("object_key must be a path relative to the local source root")
        if not path.parts:  # "", "." and "./" all name the root itself
            raise _invalid("object_key must name a file under the local source root")
        if ".." in path.parts:
            raise _invalid("object_key must not contain '..' segments")
        root = self._root.resolve()
        try:
            resolved = root.joinpath(*path.parts).resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            raise _invalid("object_key cannot be resolved (symlink loop)") from None
        if not resolved.is_relative_to(root):
            raise _invalid("object_key leads outside the local source root through a symlink")
        if self._is_private(resolved):
            raise _invalid("object_key names the service's own data, which is not a source")
        return resolved

    def _is_private(self, resolved: Path) -> bool:
        candidates = [resolved, *resolved.parents]
        # Every ancestor's stat is taken only once some private path exists to compare with:
        # `api` on production backends usually has no data directory, and this check runs on
        # every create and start.
        identities: set[tuple[int, int] | None] | None = None
        for private in self._private:
            real = private.resolve()
            if any(path == real for path in candidates):
                return True
            target = _identity(real)
            if target is None:
                continue
            if identities is None:
                identities = {_identity(path) for path in candidates}
            if target in identities:
                return True
        return False

    async def size(self, relative: str) -> int | None:
        """The file's size, or None when it is missing or not a regular file."""
        return await asyncio.to_thread(self._size, relative)

    async def read(self, relative: str) -> bytes:
        """The file's bytes; ``NotFound(code="object_not_found")`` when it is missing."""
        return await asyncio.to_thread(self._read, relative)

    def _size(self, relative: str) -> int | None:
        path = self.resolve(relative)
        try:
            with _translated_errors():
                info = path.stat()
        except NotFound:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def _read(self, relative: str) -> bytes:
        path = self.resolve(relative)
        with _translated_errors():
            return path.read_bytes()


def _identity(path: Path) -> tuple[int, int] | None:
    """Device and inode: one file's identity whatever name (or letter case) reaches it."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise NotFound("the source file does not exist", code="object_not_found") from None
    except PermissionError:
        raise _invalid("the source file is not readable by the service") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise _invalid("object_key is longer than the filesystem allows") from None
        raise StorageUnavailable("the local source root cannot be read") from exc


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_source_path")
