"""What only S3ObjectStorage does: bucket creation, key prefixes, direct downloads, and failing
fast (as StorageUnavailable) when the endpoint is gone or refuses us."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from yarl import URL

from pixelflow.adapters.storage.s3 import S3ObjectStorage
from pixelflow.core.errors import NotFound, StorageUnavailable
from tests.contract.storage.conftest import open_s3
from tests.support.seaweed import SeaweedServer
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

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


async def test_put_keeps_keys_of_any_characters(s3_storage: S3ObjectStorage) -> None:
    # Outputs are written to a presigned URL: the key must reach S3 exactly as signed.
    keys = ["outputs/j/a b+c%25=?&#~!*'(),;.png", "outputs/j/ünï cödé/東京.jpg"]
    for index, key in enumerate(keys):
        await s3_storage.put(key, f"body {index}".encode(), content_type="image/png")

    for index, key in enumerate(keys):
        assert await s3_storage.get(key) == f"body {index}".encode()
    with pytest.raises(NotFound):
        await s3_storage.get("outputs/j/a b+c%=?&#~!*'(),;.png")  # the decoded spelling


async def test_a_body_changed_in_transit_is_refused_not_stored(
    seaweed: SeaweedServer, bucket: str
) -> None:
    with _proxied(seaweed) as proxy:
        proxy.rewrite_upstream(b"INTACT-PAYLOAD", b"BROKEN-PAYLOAD")
        storage = await _open_through(proxy, seaweed, bucket)
        try:
            await storage.put("out/clean", b"nothing to rewrite", content_type="text/plain")
            with pytest.raises(StorageUnavailable):
                await storage.put("out/changed", b"<INTACT-PAYLOAD>", content_type="text/plain")

            assert await storage.get("out/clean") == b"nothing to rewrite"
            with pytest.raises(NotFound):
                await storage.get("out/changed")
        finally:
            await storage.close()


async def test_put_tries_again_when_the_server_hangs_up(
    seaweed: SeaweedServer, bucket: str
) -> None:
    # aiohttp sends an idempotent request (a PUT) once more itself when the server hangs up;
    # the storage tries once more on top of that: four connections at most, then it gives up.
    with _proxied(seaweed) as proxy:
        # Each storage's first write opens a connection of its own.
        twice = await _open_through(proxy, seaweed, bucket)
        always = await _open_through(proxy, seaweed, bucket)
        try:
            before = proxy.accepted
            proxy.drop_connections(2)  # the first attempt, and aiohttp's own second try
            await twice.put("out/retried", b"made it", content_type="text/plain")
            assert proxy.accepted == before + 3

            proxy.drop_connections(10)
            with pytest.raises(StorageUnavailable):
                await always.put("out/given-up", b"lost", content_type="text/plain")
            assert proxy.accepted == before + 3 + 4
            proxy.drop_connections(0)
            assert await twice.get("out/retried") == b"made it"
            with pytest.raises(NotFound):
                await always.get("out/given-up")
        finally:
            await twice.close()
            await always.close()


async def test_a_put_with_wrong_credentials_is_unavailable_not_leaked(
    seaweed: SeaweedServer, bucket: str
) -> None:
    endpoint = seaweed.endpoint
    storage = await S3ObjectStorage.open(
        bucket,
        endpoint_url=endpoint.endpoint_url,
        region=endpoint.region,
        access_key=endpoint.access_key,
        secret_key="not-the-secret",
        create_bucket=False,
    )
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await storage.put("out/denied", b"v", content_type="text/plain")
    finally:
        await storage.close()
    assert caught.value.message == "object storage is unavailable"
    good = await open_s3(seaweed, bucket)
    try:
        with pytest.raises(NotFound):
            await good.get("out/denied")
    finally:
        await good.close()


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
            # Writes too, over connections opened afresh.
            await storage.put("k2", b"after", content_type="text/plain")
            assert await storage.get("k2") == b"after"
        finally:
            await storage.close()
    finally:
        await asyncio.to_thread(server.stop)


@contextlib.contextmanager
def _proxied(seaweed: SeaweedServer) -> Iterator[TcpProxy]:
    url = URL(seaweed.endpoint.endpoint_url)
    assert url.host is not None and url.port is not None
    with tcp_proxy(url.host, url.port) as proxy:
        yield proxy


async def _open_through(proxy: TcpProxy, seaweed: SeaweedServer, bucket: str) -> S3ObjectStorage:
    endpoint = seaweed.endpoint
    return await S3ObjectStorage.open(
        bucket,
        prefix=f"t-{uuid.uuid4().hex[:12]}",
        endpoint_url=f"http://127.0.0.1:{proxy.port}",
        region=endpoint.region,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
    )


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
