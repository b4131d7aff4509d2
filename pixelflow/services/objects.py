"""Uploads to the embedded storage, whose signed URLs point at the API itself."""

from __future__ import annotations

from collections.abc import AsyncIterable

from pixelflow.adapters.storage.protocol import SelfServedStorage
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import InvalidInput, NotFound, PayloadTooLarge
from pixelflow.core.wire import SignedPostFields, SignedUrlQuery


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

    async def upload_form(
        self, signed: SignedPostFields, size: int, body: AsyncIterable[bytes]
    ) -> int:
        """Write ``body`` (``size`` bytes, already received) to the key of a form upload if its
        signed fields grant it now and ``size`` is within their limit, as S3 checks a presigned
        POST's policy; the bytes written."""
        if self.storage is None:
            raise NotFound("this deployment does not serve objects itself", code="not_found")
        self.storage.verify(
            "POST",
            signed.key,
            signed.expires,
            signed.signature,
            now=self.clock(),
            max_bytes=signed.max_bytes,
        )
        # The signature held, so max_bytes is the number we signed.
        if size > int(signed.max_bytes):
            raise PayloadTooLarge(f"the file is {size} bytes; at most {signed.max_bytes} allowed")
        if size < 1:
            raise InvalidInput("the file is empty", code="empty_upload")
        return await self.storage.put_stream(signed.key, body)
