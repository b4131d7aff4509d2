"""Object storage on any S3-compatible service (AWS S3, MinIO, SeaweedFS) through aiobotocore.

Clients upload and download directly with SigV4 presigned URLs; the API never proxies the bytes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpsession import get_cert_path

from pixelflow.adapters.storage.protocol import (
    CHUNK_BYTES,
    ObjectInfo,
    PresignedPost,
    PresignedUrl,
)
from pixelflow.adapters.storage.s3_direct import DirectPut
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import (
    InvalidInput,
    NotFound,
    SourceChanged,
    SourceTooLarge,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3 import S3Client

logger = logging.getLogger(__name__)

# S3's limit on a key's UTF-8 length, prefix included.
MAX_KEY_BYTES = 1024

# HEAD answers have no body, so a missing object or bucket shows up as a bare "404".
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})

# A dead or hung endpoint must fail a request within seconds, not hold it for a minute; the
# caller (worker retry, client retry after a 503) is the better place to try again.
_CONFIG = AioConfig(
    signature_version="s3v4",
    s3={"addressing_style": "path"},  # MinIO and SeaweedFS do not serve bucket subdomains
    connect_timeout=3,
    read_timeout=10,
    retries={"mode": "standard", "total_max_attempts": 2},  # one retry
    warm_up_loader_caches=True,  # load botocore's JSON models in a thread, not on the loop
)
# How long a URL signed for one output write stays valid: the write and its retry, with room.
_PUT_URL_SECONDS = 300


class S3ObjectStorage:
    """Use ``await S3ObjectStorage.open(...)``; one instance (one HTTP connection pool) per
    process, released by ``close()``."""

    def __init__(
        self,
        client: S3Client,
        direct: DirectPut,
        exit_stack: AsyncExitStack,
        bucket: str,
        prefix: str,
        clock: Clock,
    ) -> None:
        self._client = client
        self._direct = direct
        self._exit_stack = exit_stack
        self._bucket = bucket
        self._prefix = prefix
        self._clock = clock

    @classmethod
    async def open(
        cls,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        create_bucket: bool = True,
        clock: Clock = utc_now,
    ) -> S3ObjectStorage:
        """Connect to ``bucket``, creating it when missing if ``create_bucket``.

        Credentials default to botocore's usual chain (``AWS_ACCESS_KEY_ID`` and
        ``AWS_SECRET_ACCESS_KEY``, profiles, instance roles), ``region`` to ``AWS_DEFAULT_REGION``.
        """
        exit_stack = AsyncExitStack()
        session = get_session()
        client = await exit_stack.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=_CONFIG,
            )
        )
        # The CA bundle botocore verifies with (AWS_CA_BUNDLE, else its default).
        direct = DirectPut.open(
            cafile=session.get_config_variable("ca_bundle") or get_cert_path(True)
        )
        exit_stack.push_async_callback(direct.close)
        storage = cls(client, direct, exit_stack, bucket, prefix.strip("/"), clock)
        if create_bucket:
            try:
                await storage._create_bucket_if_missing(region)
            except BaseException:
                await storage.close()
                raise
        return storage

    async def presign_put(self, key: str, *, expires_in: int) -> PresignedUrl:
        # Stamp the expiry before signing, so it is never later than the one in the URL.
        expires_at = self._clock() + timedelta(seconds=expires_in)
        url = await self._presign("put_object", key, expires_in)
        return PresignedUrl(url=url, expires_at=expires_at)

    async def presign_post(self, key: str, *, expires_in: int, max_bytes: int) -> PresignedPost:
        expires_at = self._clock() + timedelta(seconds=expires_in)
        # The policy pins the bucket and the exact key (botocore adds both conditions) and the
        # size: S3 answers 400 EntityTooLarge to a bigger file and stores nothing.
        with _translated_errors():
            post = await self._client.generate_presigned_post(
                self._bucket,
                self._key(key),
                Conditions=[["content-length-range", 1, max_bytes]],
                ExpiresIn=expires_in,
            )
        return PresignedPost(url=post["url"], fields=dict(post["fields"]), expires_at=expires_at)

    async def download_url(self, key: str, *, expires_in: int) -> str | None:
        return await self._presign("get_object", key, expires_in)

    async def size(self, key: str) -> int | None:
        try:
            with _translated_errors():
                head = await self._client.head_object(Bucket=self._bucket, Key=self._key(key))
        except _Missing:
            return None
        return head["ContentLength"]

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            with _translated_errors():
                head = await self._client.head_object(Bucket=self._bucket, Key=self._key(key))
        except _Missing:
            return None
        return ObjectInfo(size=head["ContentLength"], etag=head["ETag"])

    async def get(
        self, key: str, *, max_bytes: int | None = None, if_match: str | None = None
    ) -> bytes:
        extra: dict[str, Any] = {"IfMatch": if_match} if if_match is not None else {}
        try:
            with _translated_errors():
                response = await self._client.get_object(
                    Bucket=self._bucket, Key=self._key(key), **extra
                )
                async with response["Body"] as body:
                    if max_bytes is None:
                        return await body.read()
                    # The declared length first, then at most one byte past the limit: a
                    # replaced or lying object never makes the worker read gigabytes.
                    if response["ContentLength"] > max_bytes:
                        raise _too_large(response["ContentLength"], max_bytes)
                    # A read returns what the socket has, not what was asked: gather chunks.
                    chunks: list[bytes] = []
                    received = 0
                    async for chunk in body.iter_chunks(CHUNK_BYTES):
                        received += len(chunk)
                        if received > max_bytes:
                            raise _too_large(received, max_bytes)
                        chunks.append(chunk)
                    return b"".join(chunks)
        except _Missing:
            raise NotFound(f"object {key!r} does not exist", code="object_not_found") from None
        except _PreconditionFailed:
            raise SourceChanged("the source was replaced after the job was started") from None

    async def open_stream(self, key: str) -> BodyStream:
        try:
            with _translated_errors():
                response = await self._client.get_object(Bucket=self._bucket, Key=self._key(key))
        except _Missing:
            raise NotFound(f"object {key!r} does not exist", code="object_not_found") from None
        return BodyStream(response["Body"], response["ContentLength"])

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        # Outputs are written once per job: see s3_direct for why not through put_object.
        url = await self._presign("put_object", key, _PUT_URL_SECONDS)
        await self._direct.put(url, data, content_type=content_type)

    async def delete(self, key: str) -> None:
        # S3 answers 204 for a missing key too, so "already gone" needs no special case.
        with _translated_errors():
            await self._client.delete_object(Bucket=self._bucket, Key=self._key(key))

    async def ping(self) -> None:
        try:
            with _translated_errors():
                await self._client.head_bucket(Bucket=self._bucket)
        except _Missing:
            raise StorageUnavailable("the storage bucket does not exist") from None

    async def close(self) -> None:
        await self._exit_stack.aclose()

    def _key(self, key: str) -> str:
        full = f"{self._prefix}/{key}" if self._prefix else key
        if len(full.encode()) > MAX_KEY_BYTES:
            # S3 would answer 400 KeyTooLongError, which reads as an outage (503) here.
            raise InvalidInput(
                f"object keys are at most {MAX_KEY_BYTES} bytes", code="invalid_object_key"
            )
        return full

    async def _presign(self, operation: str, key: str, expires_in: int) -> str:
        # Signing is local computation; only a broken credential chain can fail here.
        with _translated_errors():
            return await self._client.generate_presigned_url(
                operation,
                Params={"Bucket": self._bucket, "Key": self._key(key)},
                ExpiresIn=expires_in,
            )

    async def _create_bucket_if_missing(self, region: str | None) -> None:
        try:
            with _translated_errors():
                await self._client.head_bucket(Bucket=self._bucket)
            return
        except _Missing:
            pass
        extra: dict[str, Any] = {}
        # us-east-1 is S3's default location and must not be named explicitly.
        if region and region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with _translated_errors():
            try:
                await self._client.create_bucket(Bucket=self._bucket, **extra)
            except ClientError as exc:
                # Another process (a second worker) may have created it since our HEAD.
                if _error_code(exc) != "BucketAlreadyOwnedByYou":
                    raise


class BodyStream:
    """A GET's open response body, read off the socket chunk by chunk."""

    def __init__(self, body: StreamingBody, size: int) -> None:
        self._body = body
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _translated_errors():
            async for chunk in self._body.iter_chunks(CHUNK_BYTES):
                yield chunk

    async def aclose(self) -> None:
        await self._body.aclose()


def _too_large(size: int, limit: int) -> SourceTooLarge:
    return SourceTooLarge(f"the source is {size}+ bytes; at most {limit} are allowed")


class _PreconditionFailed(StorageUnavailable):
    """HTTP 412: ``If-Match`` named another version of the object."""


class _Missing(StorageUnavailable):
    """HTTP 404 for an object or the bucket. Methods that expect it catch it; anywhere else it
    means the storage is not usable as configured."""


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn the dependency's exceptions into ours, keeping its text out of our messages (it goes
    to the log and the exception chain, where operators look)."""
    try:
        yield
    except ClientError as exc:
        code = _error_code(exc)
        if code in _MISSING:
            raise _Missing("object storage is unavailable") from exc
        if code in {"PreconditionFailed", "412"}:
            raise _PreconditionFailed("object storage is unavailable") from exc
        logger.warning("S3 request failed: %s (HTTP %s)", code, _status(exc))
        raise StorageUnavailable("object storage is unavailable") from exc
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
        logger.warning("S3 endpoint unreachable: %s", type(exc).__name__)
        raise StorageUnavailable("object storage is unavailable") from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
