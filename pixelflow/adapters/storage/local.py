"""Object storage in a local directory, for the single-process ``serve`` mode.

Objects are plain files under ``root``. Clients upload through the API itself
(``PUT /v1/objects/{key}``, or the bounded form upload ``POST /v1/objects``) with URLs signed
by this class (see ``signing``): the object service calls ``verify`` and then ``put_stream``.
Downloads go through the outputs route, which streams ``open_stream`` (``download_url`` is None:
there is no other server to redirect to).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import quote

from pixelflow.adapters.storage import signing
from pixelflow.adapters.storage.protocol import (
    CHUNK_BYTES,
    ObjectInfo,
    PresignedPost,
    PresignedUrl,
)
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import (
    InvalidInput,
    NotFound,
    SourceChanged,
    SourceTooLarge,
    StorageUnavailable,
)

T = TypeVar("T")

# As S3: longer keys are refused, not passed on to the filesystem's own limits.
MAX_KEY_CHARS = 1024

# A segment may not start with "." so that "..", "." and our own ".tmp" files can never be keys.
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


def check_key(key: str) -> None:
    """Reject keys that could step outside the root or collide with temporary files: keys are
    ``/``-separated segments of letters, digits, ``.``, ``_`` and ``-``, none starting with ``.``.
    """
    if (
        not key
        or len(key) > MAX_KEY_CHARS
        or not all(_SEGMENT.fullmatch(segment) for segment in key.split("/"))
    ):
        raise InvalidInput(
            "object keys are '/'-separated segments of letters, digits, '.', '_' and '-',"
            f" none empty or starting with '.', at most {MAX_KEY_CHARS} characters",
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

    @classmethod
    async def open(
        cls, root: Path, *, public_url: str, secret: bytes, clock: Clock = utc_now
    ) -> LocalObjectStorage:
        """The storage, with its root directory created (as the S3 adapter creates its bucket):
        from then on a missing root means the storage is broken, not that it is empty."""
        storage = cls(root, public_url=public_url, secret=secret, clock=clock)
        await _off_loop(partial(_create_root, root))
        return storage

    # -- signed URLs -------------------------------------------------------------------------

    async def presign_put(self, key: str, *, expires_in: int) -> PresignedUrl:
        return self._presign("PUT", key, expires_in)

    async def presign_post(self, key: str, *, expires_in: int, max_bytes: int) -> PresignedPost:
        """The same shape as S3's presigned POST, served by ``POST /v1/objects``: the fields
        carry the key, the expiry and the size limit, all covered by the signature."""
        check_key(key)
        expires = int(self._clock().timestamp()) + expires_in
        signature = signing.sign(self._secret, "POST", key, expires, max_bytes)
        return PresignedPost(
            url=f"{self._public_url}/v1/objects",
            fields={
                "key": key,
                "expires": str(expires),
                "max_bytes": str(max_bytes),
                "signature": signature,
            },
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    async def download_url(self, key: str, *, expires_in: int) -> str | None:
        # There is nowhere to redirect to: the API serves the bytes itself.
        return None

    def verify(
        self,
        method: str,
        key: str,
        expires: str,
        signature: str,
        *,
        now: datetime,
        max_bytes: str | None = None,
    ) -> None:
        """Check a signed request for ``method`` on ``key``; raises ``Unauthorized`` with code
        ``invalid_signature`` or ``url_expired``. Pass the request's own method (``GET`` for a
        ``HEAD``), not the URL's ``method`` parameter, and a form upload's ``max_bytes``."""
        # No key check needed here: we sign only valid keys, so a bad one fails the MAC, and
        # put_stream checks it again anyway.
        signing.verify(self._secret, method, key, expires, signature, now=now, max_bytes=max_bytes)

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
        return await _off_loop(partial(_size, self._root, self._path(key)))

    async def stat(self, key: str) -> ObjectInfo | None:
        return await _off_loop(partial(_stat, self._root, self._path(key)))

    async def get(
        self, key: str, *, max_bytes: int | None = None, if_match: str | None = None
    ) -> bytes:
        data = await _off_loop(partial(_read, self._root, self._path(key), max_bytes, if_match))
        if data is None:
            raise NotFound(f"object {key!r} does not exist", code="object_not_found")
        return data

    async def open_stream(self, key: str) -> FileStream:
        opened = await _off_loop(partial(_open, self._root, self._path(key)))
        if opened is None:
            raise NotFound(f"object {key!r} does not exist", code="object_not_found")
        return FileStream(*opened)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        pending = await _off_loop(partial(_PendingFile, self._root, self._path(key)))
        written = 0
        try:
            async for chunk in chunks:
                await _off_loop(partial(pending.write, chunk))
                written += len(chunk)
            await _off_loop(pending.commit)
        except BaseException:
            # Even when cancelled here, the thread runs to the end: no temporary file is left.
            await asyncio.to_thread(pending.discard)
            raise
        return written

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        # The content type is not kept: the outputs route sends the one recorded in the job's
        # output, and uploaded sources are sniffed by the decoder.
        await _off_loop(partial(_write_atomically, self._root, self._path(key), data))

    async def delete(self, key: str) -> None:
        await _off_loop(partial(_unlink, self._path(key)))

    async def ping(self) -> None:
        await _off_loop(partial(_check_writable_root, self._root))

    async def close(self) -> None:
        pass

    def _path(self, key: str) -> Path:
        check_key(key)
        return self._root.joinpath(*key.split("/"))


class FileStream:
    """An open object file, read in chunks in a worker thread."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await _off_loop(partial(self._file.read, CHUNK_BYTES)):
            yield chunk

    async def aclose(self) -> None:
        if not self._file.closed:
            await asyncio.to_thread(self._file.close)


async def _off_loop(call: Callable[[], T]) -> T:
    try:
        return await asyncio.to_thread(call)
    except OSError as exc:
        # Disk full, permissions, a vanished mount: the operator must act; callers retry later.
        raise StorageUnavailable("the local object storage cannot be used") from exc


# -- blocking helpers, always run in a worker thread ------------------------------------------


def _check_root(root: Path) -> None:
    """An object is missing only if the root is still there: a root that vanished or became a
    file is a broken storage (503), not a source that was never uploaded (409)."""
    if not root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "the storage root is not a directory", str(root))


def _size(root: Path, path: Path) -> int | None:
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        _check_root(root)
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _etag(info: os.stat_result) -> str:
    # Objects are replaced by rename (_PendingFile.commit), so a new version is a new inode;
    # the mtime and size catch an in-place edit by someone else.
    return f"{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}"


def _stat(root: Path, path: Path) -> ObjectInfo | None:
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        _check_root(root)
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return ObjectInfo(size=info.st_size, etag=_etag(info))


def _read(
    root: Path, path: Path, max_bytes: int | None = None, if_match: str | None = None
) -> bytes | None:
    """Checks and reads through one open descriptor, so the version checked is the one read."""
    opened = _open(root, path)
    if opened is None:
        return None
    file, size = opened
    with file:
        if if_match is not None and _etag(os.fstat(file.fileno())) != if_match:
            raise SourceChanged("the source was replaced after the job was started")
        if max_bytes is None:
            return file.read()
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        data = file.read(max_bytes + 1)  # a file growing under us is caught here
        if len(data) > max_bytes:
            raise _too_large(len(data), max_bytes)
        return data


def _too_large(size: int, limit: int) -> SourceTooLarge:
    return SourceTooLarge(f"the source is {size}+ bytes; at most {limit} are allowed")


def _open(root: Path, path: Path) -> tuple[BinaryIO, int] | None:
    """The open file and its size, or None when there is no such object (a directory is not
    one). The size comes from the open file, so it matches the bytes read even if the object
    is replaced meanwhile (a replace is a rename: this file stays as it was)."""
    try:
        file = path.open("rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        _check_root(root)
        return None
    try:
        info = os.fstat(file.fileno())
    except BaseException:
        file.close()
        raise
    if not stat.S_ISREG(info.st_mode):
        file.close()
        return None
    return file, info.st_size


class _PendingFile:
    """A new object being written: a temporary file beside its path, renamed over it only once
    complete, so readers see the old object or the new one, never a partial file."""

    def __init__(self, root: Path, path: Path) -> None:
        _check_root(root)  # never quietly recreate a root that vanished with every object in it
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same directory, so os.replace is a rename within one filesystem; the leading "."
        # keeps the temporary name out of the key space (see _SEGMENT).
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        self._file = os.fdopen(fd, "wb")
        self._temporary = Path(temporary)
        self._path = path

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.flush()
        # The database will record this object as written: make it survive a crash first.
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temporary, self._path)

    def discard(self) -> None:
        self._file.close()
        self._temporary.unlink(missing_ok=True)


def _write_atomically(root: Path, path: Path, data: bytes) -> None:
    pending = _PendingFile(root, path)
    try:
        pending.write(data)
        pending.commit()
    except BaseException:
        pending.discard()
        raise


def _unlink(path: Path) -> None:
    # A directory is not an object, so there is nothing to delete there either.
    with contextlib.suppress(IsADirectoryError, NotADirectoryError):
        path.unlink(missing_ok=True)


def _create_root(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _check_writable_root(root)


def _check_writable_root(root: Path) -> None:
    _check_root(root)
    if not os.access(root, os.W_OK | os.X_OK):
        raise PermissionError(f"{root} is not writable")
