"""Object storage for uploaded sources and outputs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from msgspec import Struct


class PresignedUrl(Struct, kw_only=True):
    url: str
    expires_at: datetime


class ObjectStorage(Protocol):
    async def presign_put(self, key: str, *, expires_in: int) -> PresignedUrl:
        """A URL a client can PUT the object's bytes to, without credentials."""
        ...

    async def download_url(self, key: str, *, expires_in: int) -> str | None:
        """A URL to redirect a client to for the object, or None when the API should serve
        the bytes itself."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if it does not exist."""
        ...

    async def get(self, key: str) -> bytes: ...

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Write (or overwrite) an object."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; a missing one is not an error."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# Every method raises ``pixelflow.core.errors.StorageUnavailable`` (never the dependency's own
# exception or its message) when the backend cannot be reached, and ``get`` raises
# ``pixelflow.core.errors.NotFound(code="object_not_found")`` for a missing object.


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
    """Storage whose signed URLs point at the API itself (the embedded local directory):
    the API serves ``/v1/objects/{key}`` and checks each request with ``verify``."""

    def verify(self, method: str, key: str, expires: str, signature: str, *, now: datetime) -> None:
        """Raise ``Unauthorized`` (``invalid_signature`` or ``url_expired``) unless the URL's
        signature is valid for this method, key and expiry."""
        ...
