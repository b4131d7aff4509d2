"""Object storage in a local directory, for the single-process ``serve`` mode.

Objects are plain files under ``root``. Clients reach them through the API itself
(``PUT``/``GET /v1/objects/{key}``) with URLs signed by this class (see ``signing``); the route
calls ``verify`` and then ``put``/``get``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from pixelflow.adapters.storage import signing
from pixelflow.adapters.storage.protocol import PresignedUrl
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import InvalidInput, NotFound, StorageUnavailable

T = TypeVar("T")

# A segment may not start with "." so that "..", "." and our own ".tmp" files can never be keys.
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


def check_key(key: str) -> None:
    """Reject keys that could step outside the root or collide with temporary files: keys are
    ``/``-separated segments of letters, digits, ``.``, ``_`` and ``-``, none starting with ``.``.
    """
    if not key or not all(_SEGMENT.fullmatch(segment) for segment in key.split("/")):
        raise InvalidInput(
            "object keys are '/'-separated segments of letters, digits, '.', '_' and '-',"
            " none empty or starting with '.'",
            code="invalid_object_key",
        )


class LocalObjectStorage:
    def __init__(
        self, root: Path, *, public_url: str, secret: bytes, clock: Clock = utc_now
    ) -> None:
        if not secret:
            raise ValueError("LocalObjectStorage needs a non-empty signing secret")
        self._root = root
        self._public_url = public_url.rstrip("/")
        self._secret = secret
        self._clock = clock

    # -- signed URLs -------------------------------------------------------------------------

    async def presign_put(self, key: str, *, expires_in: int) -> PresignedUrl:
        return self._presign("PUT", key, expires_in)

    async def presign_get(self, key: str, *, expires_in: int) -> PresignedUrl:
        return self._presign("GET", key, expires_in)

    async def download_url(self, key: str, *, expires_in: int) -> str | None:
        # There is nowhere to redirect to: the API serves the bytes itself.
        return None

    def verify(self, method: str, key: str, expires: str, signature: str, *, now: datetime) -> None:
        """Check a signed request for ``method`` on ``key``; raises ``Unauthorized`` with code
        ``invalid_signature`` or ``url_expired``. Pass the request's own method (``GET`` for a
        ``HEAD``), not the URL's ``method`` parameter."""
        # No key check needed here: we sign only valid keys, so a bad one fails the MAC, and
        # put/get check it again anyway.
        signing.verify(self._secret, method, key, expires, signature, now=now)

    def _presign(self, method: str, key: str, expires_in: int) -> PresignedUrl:
        check_key(key)
        expires = int(self._clock().timestamp()) + expires_in
        query = signing.signed_query(self._secret, method, key, expires)
        return PresignedUrl(
            url=f"{self._public_url}/v1/objects/{quote(key)}?{query}",
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    # -- objects -----------------------------------------------------------------------------

    async def size(self, key: str) -> int | None:
        return await _off_loop(partial(_size, self._path(key)))

    async def get(self, key: str) -> bytes:
        data = await _off_loop(partial(_read, self._path(key)))
        if data is None:
            raise NotFound(f"object {key!r} does not exist", code="object_not_found")
        return data

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        # The content type is not kept: the API derives it from the key's extension.
        await _off_loop(partial(_write_atomically, self._path(key), data))

    async def delete(self, key: str) -> None:
        await _off_loop(partial(_unlink, self._path(key)))

    async def ping(self) -> None:
        await _off_loop(partial(_ensure_writable_dir, self._root))

    async def close(self) -> None:
        pass

    def _path(self, key: str) -> Path:
        check_key(key)
        return self._root.joinpath(*key.split("/"))


async def _off_loop(call: Callable[[], T]) -> T:
    try:
        return await asyncio.to_thread(call)
    except OSError as exc:
        # Disk full, permissions, a vanished mount: the operator must act; callers retry later.
        raise StorageUnavailable("the local object storage cannot be used") from exc


# -- blocking helpers, always run in a worker thread ------------------------------------------


def _size(path: Path) -> int | None:
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old object or the new one, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so os.replace is a rename within one filesystem; the leading "." keeps the
    # temporary name out of the key space (see _SEGMENT).
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            # The database will record this object as written: make it survive a crash first.
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _unlink(path: Path) -> None:
    # A directory is not an object, so there is nothing to delete there either.
    with contextlib.suppress(IsADirectoryError, NotADirectoryError):
        path.unlink(missing_ok=True)


def _ensure_writable_dir(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.W_OK | os.X_OK):
        raise PermissionError(f"{root} is not writable")
