"""Source files for ``local_file`` jobs, confined to ``PIXELFLOW_LOCAL_SOURCE_ROOT``.

Paths come from API clients, so every way out of the root is refused: absolute paths, ``..``
segments and symlinks (or symlinked directories) that point outside. Symlinks that stay inside
are followed. Every way *into* a private path under the root (``serve``'s data directory,
which holds the database, the signing key and every job's outputs) is refused too: the real path
is compared by name and, for itself and each of its parents under the root (and, once, the
root's own ancestors), by device and inode, so a symlink, a hard link, a detour or a case
variation on a case-insensitive filesystem all meet the same refusal. The check runs at create
time, at start and again when the worker reads the file. On Linux the file is opened before it
is checked and its real path read back from the open descriptor, so the bytes read are those of
the file that passed the check, whatever is renamed or re-linked in between. Elsewhere the check
walks the path and the read opens it again: someone who can write under the root could race the
two with a rename, so the root itself is trusted there.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pixelflow.core.errors import InvalidInput, NotFound, StorageUnavailable

# S3's own key limit; a longer local path would only reach the OS's ENAMETOOLONG.
MAX_OBJECT_KEY_CHARS = 1024


class LocalSourceRoot:
    """The root and the private paths are resolved once, when the process builds this: they
    are the service's own configuration, and resolving them again on every create and start
    was most of the check's cost. A root re-pointed while the service runs is therefore not
    followed (sources keep coming from the directory it named at start-up); restart to move
    it. Every source path is still resolved afresh on every call."""

    def __init__(self, root: Path, *, private: Sequence[Path] = ()) -> None:
        self._root = os.path.realpath(root)
        self._inside_root = self._root.rstrip("/") + "/"
        # The root and everything above it, by identity: a private directory that holds the
        # root (under another name, or letter case) makes every source private.
        self._root_lineage = _lineage_identities(self._root)
        self._private = tuple(_PrivatePath(os.path.realpath(path)) for path in private)
        # Where the kernel names open files (Linux's /proc/self/fd), a source is opened first
        # and its real path read back from the open file: one open and one readlink in C
        # instead of a walk in Python, and what is then read is the very file that was checked.
        self._pinned = _can_pin_files()

    def resolve(self, relative: str) -> Path:
        """The real path of ``relative`` inside the root, or ``InvalidInput`` with code
        ``invalid_source_path``. It touches the filesystem (to follow symlinks): from async code,
        call it through ``size``/``read`` or in a thread."""
        with self._checked(relative) as (path, _, _):
            return Path(path)

    @contextmanager
    def _checked(self, relative: str) -> Iterator[tuple[str, int | None, os.stat_result | None]]:
        """The checked real path of ``relative`` and, where files can be pinned and it exists,
        an ``O_PATH`` descriptor of that very file (closed on exit) and its status."""
        joined = self._joined(relative)
        pinned = _open_pinned(joined) if self._pinned else None
        try:
            resolved = _pinned_path(pinned) if pinned is not None else _realpath(joined)
            if resolved != self._root and not resolved.startswith(self._inside_root):
                raise _invalid("object_key leads outside the local source root through a symlink")
            # The pinned file's own status serves the identity check and the caller alike.
            info = None
            if pinned is not None:
                with _translated_errors():
                    info = os.fstat(pinned)
            if self._is_private(resolved, info):
                raise _invalid("object_key names the service's own data, which is not a source")
            yield resolved, pinned, info
        finally:
            if pinned is not None:
                os.close(pinned)

    def _joined(self, relative: str) -> str:
        """``relative`` under the root, once it passes the checks that need no filesystem."""
        if len(relative) > MAX_OBJECT_KEY_CHARS:
            raise _invalid(f"object_key must be at most {MAX_OBJECT_KEY_CHARS} characters")
        if "\0" in relative:
            raise _invalid("object_key must not contain NUL bytes")
        if relative.startswith("/"):
            raise _invalid("object_key must be a path relative to the local source root")
        # The segments as PurePosixPath reads them (empty and "." ones dropped), split by hand:
        # this runs on every create and start.
        parts = [part for part in relative.split("/") if part and part != "."]
        if not parts:  # "", "." and "./" all name the root itself
            raise _invalid("object_key must name a file under the local source root")
        if ".." in parts:
            raise _invalid("object_key must not contain '..' segments")
        return os.path.join(self._root, *parts)

    def _is_private(self, resolved: str, info: os.stat_result | None) -> bool:
        """Whether ``resolved`` is or lies under a private path; ``info`` is its status when
        the caller has it (from the pinned descriptor), saving a ``stat`` of it."""
        for private in self._private:
            if resolved == private.path or resolved.startswith(private.inside):
                return True
        # By identity too (a hard link, a case variation on a case-insensitive filesystem):
        # the path's own components under the root are stat-ed only once a private path
        # exists to compare them with.
        below_root: set[tuple[int, int] | None] | None = None
        for private in self._private:
            target = private.identity()
            if target is None:
                continue
            if target in self._root_lineage:
                return True
            if below_root is None:
                # The file itself by the pinned descriptor's status when there is one.
                below_root = {
                    _identity(path)
                    for path in self._below_root(resolved)
                    if info is None or path != resolved
                }
                if info is not None:
                    below_root.add((info.st_dev, info.st_ino))
            if target in below_root:
                return True
        return False

    def _below_root(self, resolved: str) -> Iterator[str]:
        """``resolved`` and its parents, up to but not including the root."""
        while resolved.startswith(self._inside_root):
            yield resolved
            resolved = os.path.dirname(resolved)

    async def size(self, relative: str) -> int | None:
        """The file's size, or None when it is missing or not a regular file.

        Runs on the event loop: it is metadata only (on Linux an open, a readlink and an
        fstat, ~13 µs), and a worker thread's hand-off cost five times that on every create
        and start. The root is meant to be a local directory; one on a network filesystem
        that can hang would stall the API with it."""
        return self._size(relative)

    async def read(self, relative: str) -> bytes:
        """The file's bytes; ``NotFound(code="object_not_found")`` when it is missing."""
        return await asyncio.to_thread(self._read, relative)

    def _size(self, relative: str) -> int | None:
        with self._checked(relative) as (path, _, info):
            if info is None:
                try:
                    with _translated_errors():
                        info = os.stat(path)
                except NotFound:
                    return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def _read(self, relative: str) -> bytes:
        with self._checked(relative) as (path, pinned, info), _translated_errors():
            if info is None:
                info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):  # a directory, or a FIFO that would block
                raise FileNotFoundError(path)
            # Reopening the pinned descriptor reads the file that was checked, whatever was
            # renamed or re-linked in the meantime.
            with open(path if pinned is None else f"/proc/self/fd/{pinned}", "rb") as file:
                return file.read()


class _PrivatePath:
    """A path a source must never reach; its identity is remembered once it exists (a missing
    one is looked for again on every check, so a file made later is still recognised)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.inside = path.rstrip("/") + "/"
        self._identity: tuple[int, int] | None = None

    def identity(self) -> tuple[int, int] | None:
        if self._identity is None:
            self._identity = _identity(self.path)
        return self._identity


def _can_pin_files() -> bool:
    return hasattr(os, "O_PATH") and os.path.isdir("/proc/self/fd")


def _open_pinned(path: str) -> int | None:
    """An ``O_PATH`` descriptor of ``path``, every symlink followed by the kernel; None when it
    cannot be opened (missing, or unreadable): the Python walk then gives the verdict, e.g. a
    dangling symlink that points outside the root."""
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _invalid("object_key cannot be resolved (symlink loop)") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise _invalid("object_key is longer than the filesystem allows") from None
        return None


def _pinned_path(descriptor: int) -> str:
    return os.readlink(f"/proc/self/fd/{descriptor}")


def _realpath(path: str) -> str:
    """``os.path.realpath``, except that a symlink loop is refused instead of left in place."""
    try:
        return os.path.realpath(path, strict=True)
    except (FileNotFoundError, NotADirectoryError):
        return os.path.realpath(path)  # a missing file: the caller finds it missing
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise _invalid("object_key is longer than the filesystem allows") from None
        raise _invalid("object_key cannot be resolved (symlink loop)") from None


def _lineage_identities(path: str) -> frozenset[tuple[int, int]]:
    identities = set()
    while True:
        identity = _identity(path)
        if identity is not None:
            identities.add(identity)
        parent = os.path.dirname(path)
        if parent == path:
            return frozenset(identities)
        path = parent


def _identity(path: str) -> tuple[int, int] | None:
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
        if exc.errno == errno.ELOOP:  # a symlink loop made after the path was resolved
            raise _invalid("object_key cannot be resolved (symlink loop)") from None
        raise StorageUnavailable("the local source root cannot be read") from exc


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_source_path")
