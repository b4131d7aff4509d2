"""What only S3ObjectStorage does: bucket creation, key prefixes, direct downloads, and failing
fast (as StorageUnavailable) when the endpoint is gone or refuses us."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from pixelflow.adapters.storage.s3 import S3ObjectStorage
from pixelflow.core.errors import StorageUnavailable
from tests.contract.storage.conftest import open_s3
from tests.support.seaweed import SeaweedServer

# Generous bound for calls that must fail fast; they take well under a second when healthy.
FAIL_FAST = 30.0


async def test_open_creates_a_missing_bucket(seaweed: SeaweedServer) -> None:
    bucket = f"pixelflow-new-{uuid.uuid4().hex[:12]}"
    probe = await open_s3(seaweed, bucket, create_bucket=False)
    try:
        with pytest.raises(StorageUnavailable):
            await probe.ping()  # not there yet

        created = await open_s3(seaweed, bucket)
        await created.ping()
        await created.close()
        again = await open_s3(seaweed, bucket)  # already there: still fine
        await again.put("k", b"v", content_type="text/plain")
        await again.close()

        await probe.ping()
        assert await probe.get("k") == b"v"
    finally:
        await probe.close()


async def test_prefix_namespaces_every_key(seaweed: SeaweedServer, bucket: str) -> None:
    prefix = f"p-{uuid.uuid4().hex[:8]}/nested"
    prefixed = await open_s3(seaweed, bucket, prefix=f"/{prefix}/")
    plain = await open_s3(seaweed, bucket)
    try:
        await prefixed.put("outputs/j/a.png", b"png", content_type="image/png")
        presigned = await prefixed.presign_put("uploads/j/source", expires_in=60)

        assert await plain.get(f"{prefix}/outputs/j/a.png") == b"png"
        assert await plain.size("outputs/j/a.png") is None
        assert f"/{bucket}/{prefix}/uploads/j/source?" in presigned.url
    finally:
        await prefixed.close()
        await plain.close()


async def test_download_url_serves_the_bytes_with_their_content_type(
    s3_storage: S3ObjectStorage,
) -> None:
    await s3_storage.put("outputs/j/thumb.webp", b"RIFF-webp", content_type="image/webp")

    url = await s3_storage.download_url("outputs/j/thumb.webp", expires_in=60)

    assert url is not None
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(url)
        tampered = await http.get(url.replace("thumb.webp", "other.webp"))
    assert response.status_code == 200
    assert response.content == b"RIFF-webp"
    assert response.headers["content-type"] == "image/webp"
    assert tampered.status_code == 403


async def test_wrong_credentials_are_unavailable_not_leaked(seaweed: SeaweedServer) -> None:
    endpoint = seaweed.endpoint
    with pytest.raises(StorageUnavailable) as caught:
        await S3ObjectStorage.open(
            f"pixelflow-denied-{uuid.uuid4().hex[:8]}",
            endpoint_url=endpoint.endpoint_url,
            region=endpoint.region,
            access_key=endpoint.access_key,
            secret_key="not-the-secret",
        )
    assert caught.value.message == "object storage is unavailable"


async def test_dead_endpoint_fails_fast_with_storage_unavailable() -> None:
    endpoint_url = f"http://127.0.0.1:{_closed_port()}"

    def open_dead(*, create_bucket: bool) -> Awaitable[S3ObjectStorage]:
        return S3ObjectStorage.open(
            "pixelflow-dead",
            endpoint_url=endpoint_url,
            region="us-east-1",
            access_key="key",
            secret_key="secret",
            create_bucket=create_bucket,
        )

    async with asyncio.timeout(FAIL_FAST):
        with pytest.raises(StorageUnavailable) as at_open:
            await open_dead(create_bucket=True)
        storage = await open_dead(create_bucket=False)
        try:
            calls: list[Callable[[], Awaitable[object]]] = [
                storage.ping,
                lambda: storage.size("k"),
                lambda: storage.get("k"),
                lambda: storage.put("k", b"v", content_type="text/plain"),
                lambda: storage.delete("k"),
            ]
            for call in calls:
                with pytest.raises(StorageUnavailable) as caught:
                    await call()
                assert caught.value.code == "storage_unavailable"
                assert "127.0.0.1" not in caught.value.message
            # Signing needs no network: URLs can still be handed out.
            assert (await storage.presign_put("k", expires_in=60)).url.startswith(endpoint_url)
        finally:
            await storage.close()
    assert "127.0.0.1" not in at_open.value.message


async def test_storage_recovers_when_the_server_comes_back(tmp_path: Path) -> None:
    server = SeaweedServer(tmp_path / "seaweed")  # our own: the shared one must stay up
    await asyncio.to_thread(server.start)
    try:
        storage = await open_s3(server, "pixelflow-restart")
        try:
            await storage.put("k", b"kept", content_type="text/plain")

            await asyncio.to_thread(server.stop)
            async with asyncio.timeout(FAIL_FAST):
                with pytest.raises(StorageUnavailable):
                    await storage.ping()
                with pytest.raises(StorageUnavailable):
                    await storage.get("k")

            await asyncio.to_thread(server.start)  # same ports, same data
            await storage.ping()
            assert await storage.get("k") == b"kept"
        finally:
            await storage.close()
    finally:
        await asyncio.to_thread(server.stop)


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
