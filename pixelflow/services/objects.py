"""Uploads to the embedded storage, whose signed URLs point at the API itself."""

from __future__ import annotations

from collections.abc import AsyncIterable

from pixelflow.adapters.storage.protocol import SelfServedStorage
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import NotFound
from pixelflow.core.wire import SignedUrlQuery


class ObjectService:
    def __init__(self, storage: SelfServedStorage | None, *, clock: Clock = utc_now) -> None:
        # None when the storage (S3) takes uploads itself: the API then serves no objects.
        self.storage = storage
        self.clock = clock

    async def upload(self, key: str, signed: SignedUrlQuery, body: AsyncIterable[bytes]) -> int:
        """Write ``body`` to ``key`` if ``signed`` grants a PUT on it now; the bytes written.
        ``body`` enforces the size limit: if it raises, nothing is written."""
        if self.storage is None:
            raise NotFound("this deployment does not serve objects itself", code="not_found")
        self.storage.verify("PUT", key, signed.expires, signed.signature, now=self.clock())
        return await self.storage.put_stream(key, body)
