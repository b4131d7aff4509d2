"""What only LocalObjectStorage does: key confinement, signature checks with their error codes,
streamed uploads through the API, atomic files, and disk failures as StorageUnavailable."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pixelflow.adapters.storage import signing
from pixelflow.adapters.storage.local import LocalObjectStorage
from pixelflow.adapters.storage.protocol import SelfServedStorage
from pixelflow.core.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    Unauthorized,
)
from tests.contract.storage.conftest import PUBLIC_URL, SettableClock, object_routes

KEY = "outputs/job-1/thumb.webp"
BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "uploads/../../outside",
    "uploads/..",
    "uploads//source",
    "uploads/job-1/",
    "uploads\\job-1\\source",
    ".hidden",
    "uploads/.source.tmp",
    "uploads/job\x00/source",
    "uploads/job 1/source",
]


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The storage's root, as ``LocalObjectStorage.open`` leaves it: an empty directory."""
    directory = tmp_path / "objects"
    directory.mkdir()
    return directory


@pytest.fixture
def storage(root: Path, clock: SettableClock) -> LocalObjectStorage:
    return LocalObjectStorage(root, public_url=PUBLIC_URL, secret=b"test-secret", clock=clock)


@pytest.fixture
async def api(
    storage: LocalObjectStorage, clock: SettableClock
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=object_routes(storage, clock))
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as http:
        yield http


def test_is_served_by_the_api(storage: LocalObjectStorage) -> None:
    assert isinstance(storage, SelfServedStorage)


def test_needs_a_secret(root: Path) -> None:
    with pytest.raises(ValueError):
        LocalObjectStorage(root, public_url=PUBLIC_URL, secret=b"")


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_keys_that_could_escape_are_rejected_everywhere(
    storage: LocalObjectStorage, root: Path, key: str
) -> None:
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: storage.put(key, b"x", content_type="text/plain"),
        lambda: storage.get(key),
        lambda: storage.open_stream(key),
        lambda: storage.put_stream(key, _chunks(b"x")),
        lambda: storage.size(key),
        lambda: storage.delete(key),
        lambda: storage.presign_put(key, expires_in=60),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInput) as caught:
            await attempt()
        assert caught.value.code == "invalid_object_key"
    assert not root.parent.joinpath("outside").exists()


async def test_objects_are_plain_files_without_leftovers(
    storage: LocalObjectStorage, root: Path
) -> None:
    await storage.put(KEY, b"first", content_type="image/webp")
    await storage.put(KEY, b"second", content_type="image/webp")

    assert (root / "outputs" / "job-1" / "thumb.webp").read_bytes() == b"second"
    assert os.listdir(root / "outputs" / "job-1") == ["thumb.webp"]  # no temporary files


async def test_a_failed_write_keeps_the_old_object(
    storage: LocalObjectStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.put(KEY, b"old", content_type="image/webp")

    def disk_failure(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_failure)
    with pytest.raises(StorageUnavailable) as caught:
        await storage.put(KEY, b"new", content_type="image/webp")

    assert "space" not in caught.value.message
    assert await storage.get(KEY) == b"old"
    assert os.listdir(root / "outputs" / "job-1") == ["thumb.webp"]


async def test_open_creates_the_root(tmp_path: Path) -> None:
    root = tmp_path / "data" / "objects"
    storage = await LocalObjectStorage.open(root, public_url=PUBLIC_URL, secret=b"k")

    assert await asyncio.to_thread(root.is_dir)
    assert await storage.size(KEY) is None  # empty, not broken


async def test_open_refuses_an_unusable_root(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageUnavailable):
        await LocalObjectStorage.open(
            tmp_path / "file" / "objects", public_url=PUBLIC_URL, secret=b"k"
        )


def _make_root_a_file(root: Path) -> None:
    root.rmdir()
    root.write_bytes(b"a file where the directory should be")


@pytest.mark.parametrize("breakage", [_make_root_a_file, Path.rmdir], ids=["a-file", "gone"])
async def test_a_broken_root_is_unavailable_not_empty(
    root: Path, storage: LocalObjectStorage, breakage: Callable[[Path], None]
) -> None:
    """A missing object in a healthy root is None/NotFound; once the root itself is gone or is
    a file, every call is StorageUnavailable (start answers 503, not 409 source_missing)."""
    assert await storage.size(KEY) is None
    breakage(root)
    attempts: list[Callable[[], Awaitable[object]]] = [
        storage.ping,
        lambda: storage.size(KEY),
        lambda: storage.get(KEY),
        lambda: storage.put(KEY, b"x", content_type="image/webp"),
    ]
    for attempt in attempts:
        with pytest.raises(StorageUnavailable) as caught:
            await attempt()
        assert str(root) not in caught.value.message


async def test_download_url_is_none(storage: LocalObjectStorage) -> None:
    # The API streams the bytes itself (the outputs route): there is nowhere to redirect to.
    await storage.put(KEY, b"webp bytes", content_type="image/webp")

    assert await storage.download_url(KEY, expires_in=60) is None


async def test_put_stream_writes_chunk_by_chunk(storage: LocalObjectStorage, root: Path) -> None:
    written = await storage.put_stream(KEY, _chunks(b"first ", b"", b"second"))

    assert written == len(b"first second")
    assert await storage.get(KEY) == b"first second"
    assert os.listdir(root / "outputs" / "job-1") == ["thumb.webp"]


async def test_a_failed_put_stream_keeps_the_old_object(
    storage: LocalObjectStorage, root: Path
) -> None:
    """The upload route's body raises PayloadTooLarge past the limit: nothing is written."""
    await storage.put(KEY, b"old", content_type="image/webp")

    async def too_large() -> AsyncIterator[bytes]:
        yield b"new bytes"
        raise PayloadTooLarge("the body is larger than 9 bytes")

    with pytest.raises(PayloadTooLarge):
        await storage.put_stream(KEY, too_large())

    assert await storage.get(KEY) == b"old"
    assert os.listdir(root / "outputs" / "job-1") == ["thumb.webp"]


async def test_a_stream_opened_before_an_overwrite_reads_the_old_object(
    storage: LocalObjectStorage,
) -> None:
    await storage.put(KEY, b"old object", content_type="image/webp")
    stream = await storage.open_stream(KEY)
    try:
        await storage.put(KEY, b"new", content_type="image/webp")
        assert stream.size == len(b"old object")
        assert b"".join([chunk async for chunk in stream]) == b"old object"
    finally:
        await stream.aclose()


async def test_a_directory_is_not_an_object_to_stream(storage: LocalObjectStorage) -> None:
    await storage.put(KEY, b"x", content_type="image/webp")

    with pytest.raises(NotFound):
        await storage.open_stream("outputs/job-1")


async def test_a_get_url_cannot_upload(
    storage: LocalObjectStorage, api: httpx.AsyncClient, clock: SettableClock
) -> None:
    # A URL signed for another method (GET URLs are never issued, but the signature says so).
    expires = int(clock().timestamp()) + 60
    query = signing.signed_query(b"test-secret", "GET", KEY, expires)

    response = await api.put(f"{PUBLIC_URL}/v1/objects/{KEY}?{query}", content=b"overwrite")

    assert response.status_code == 401
    assert response.json() == {"code": "invalid_signature"}
    assert await storage.size(KEY) is None


async def test_verify_accepts_its_own_url_until_expiry(
    storage: LocalObjectStorage, clock: SettableClock
) -> None:
    signed = await storage.presign_put(KEY, expires_in=60)
    params = _params(signed.url)

    storage.verify("PUT", KEY, params["expires"], params["signature"], now=clock())
    storage.verify("PUT", KEY, params["expires"], params["signature"], now=signed.expires_at)

    late = signed.expires_at + timedelta(seconds=1)
    with pytest.raises(Unauthorized) as caught:
        storage.verify("PUT", KEY, params["expires"], params["signature"], now=late)
    assert caught.value.code == "url_expired"


@pytest.mark.parametrize(
    ("method", "key", "expires", "signature"),
    [
        pytest.param("GET", KEY, None, None, id="other-method"),
        pytest.param("PUT", "outputs/job-2/thumb.webp", None, None, id="other-key"),
        pytest.param("PUT", KEY, "9999999999", None, id="extended-expiry"),
        pytest.param("PUT", KEY, None, "", id="no-signature"),
        pytest.param("PUT", KEY, "", None, id="no-expiry"),
        pytest.param("PUT", KEY, None, "0" * 64, id="zero-signature"),
    ],
)
async def test_verify_refuses_anything_it_did_not_sign(
    storage: LocalObjectStorage,
    clock: SettableClock,
    method: str,
    key: str,
    expires: str | None,
    signature: str | None,
) -> None:
    params = _params((await storage.presign_put(KEY, expires_in=60)).url)

    with pytest.raises(Unauthorized) as caught:
        storage.verify(
            method,
            key,
            params["expires"] if expires is None else expires,
            params["signature"] if signature is None else signature,
            now=clock(),
        )
    assert caught.value.code == "invalid_signature"


async def test_another_secret_does_not_verify(
    storage: LocalObjectStorage, root: Path, clock: SettableClock
) -> None:
    params = _params((await storage.presign_put(KEY, expires_in=60)).url)
    other = LocalObjectStorage(root, public_url=PUBLIC_URL, secret=b"other-secret", clock=clock)

    with pytest.raises(Unauthorized) as caught:
        other.verify("PUT", KEY, params["expires"], params["signature"], now=clock())
    assert caught.value.code == "invalid_signature"


async def _chunks(*parts: bytes) -> AsyncIterable[bytes]:
    for part in parts:
        yield part


def _params(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
