"""Object storage for uploaded sources and outputs."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from msgspec import Struct


class PresignedUrl(Struct, kw_only=True):
    url: str
    expires_at: datetime


class PresignedPost(Struct, kw_only=True):
    """An HTML-form upload: POST ``url`` as ``multipart/form-data`` with every one of ``fields``
    and then the bytes as a part named ``file`` (last). Unlike a presigned PUT, the signed policy
    bounds the size: the server refuses a file over the limit before storing it."""

    url: str
    fields: dict[str, str]
    expires_at: datetime


# Bytes are read and written in pieces this large: big enough that a thread hop or a socket
# write per piece costs little, small enough that a download holds little memory.
CHUNK_BYTES = 256 * 1024


class ObjectStream(Protocol):
    """An object opened for reading: its size, then its bytes in chunks (``async for``).

    The reader must ``aclose()`` it (safe to call twice, and before or after reading). A failure
    while reading raises ``StorageUnavailable``."""

    size: int

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class ObjectInfo(Struct, kw_only=True, frozen=True):
    size: int
    # Changes whenever the object's content is replaced (S3's ETag; the local store's own tag).
    etag: str


class ObjectStorage(Protocol):
    async def presign_put(self, key: str, *, expires_in: int) -> PresignedUrl:
        """A URL a client can PUT the object's bytes to, without credentials (any size: see
        ``presign_post`` for a bounded upload)."""
        ...

    async def presign_post(self, key: str, *, expires_in: int, max_bytes: int) -> PresignedPost:
        """A form upload of the object (see ``PresignedPost``) that the storage server refuses
        unless the file is 1 to ``max_bytes`` bytes long, is sent to exactly ``key`` and the
        signed fields are unchanged."""
        ...

    async def download_url(self, key: str, *, expires_in: int) -> str | None:
        """A URL to redirect a client to for the object, or None when the API should serve
        the bytes itself."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if it does not exist."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and version tag, or None if it does not exist."""
        ...

    async def get(
        self, key: str, *, max_bytes: int | None = None, if_match: str | None = None
    ) -> bytes:
        """The object's bytes. With ``max_bytes``, ``SourceTooLarge`` for a larger object,
        having read at most ``max_bytes + 1`` bytes of it; with ``if_match`` (an ``etag``
        from ``stat``), ``SourceChanged`` unless the object is still that version."""
        ...

    async def open_stream(self, key: str) -> ObjectStream:
        """The object opened for reading in chunks of about ``CHUNK_BYTES``, without holding it
        all in memory; ``NotFound(code="object_not_found")`` when it is missing (raised here,
        before any byte is read)."""
        ...

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Write (or overwrite) an object."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; a missing one is not an error."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# Every method raises ``pixelflow.core.errors.StorageUnavailable`` (never the dependency's own
# exception or its message) when the backend cannot be reached, and ``get``/``open_stream``
# raise ``pixelflow.core.errors.NotFound(code="object_not_found")`` for a missing object.


class SourceFiles(Protocol):
    """Source images for ``local_file`` jobs, confined to one root directory."""

    def resolve(self, relative: str) -> Path:
        """The absolute path of ``relative`` inside the root; raises
        ``InvalidInput(code="invalid_source_path")`` for anything that escapes it."""
        ...

    async def size(self, relative: str) -> int | None:
        """The file's size, or None if it is missing or not a regular file."""
        ...

    async def read(self, relative: str) -> bytes: ...


@runtime_checkable
class SelfServedStorage(ObjectStorage, Protocol):
    """Storage whose signed upload URLs point at the API itself (the embedded local directory):
    the API serves ``PUT /v1/objects/{key}`` and the form upload ``POST /v1/objects``, checks
    each request with ``verify`` and writes the body with ``put_stream``."""

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
        """Raise ``Unauthorized`` (``invalid_signature`` or ``url_expired``) unless the URL's
        signature is valid for this method, key and expiry (and, for a form upload, the size
        limit it was signed with)."""
        ...

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Write (or overwrite) an object from ``chunks`` without holding it all in memory;
        the number of bytes written. If ``chunks`` raises (e.g. a size limit), nothing is
        written and the old object, if any, stays."""
        ...
