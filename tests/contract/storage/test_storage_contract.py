"""The ObjectStorage contract, run against every implementation (see ``subject`` in conftest)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pixelflow.adapters.storage.protocol import CHUNK_BYTES, PresignedPost
from pixelflow.core.errors import InvalidInput, NotFound, SourceChanged, SourceTooLarge
from tests.contract.storage.conftest import StorageUnderTest

SOURCE = "uploads/job-1/source"
OUTPUT = "outputs/job-1/thumb.webp"
EVERY_BYTE = bytes(range(256)) * 4


async def test_put_then_get_and_size(subject: StorageUnderTest) -> None:
    storage = subject.storage

    await storage.put(OUTPUT, EVERY_BYTE, content_type="image/webp")

    assert await storage.get(OUTPUT) == EVERY_BYTE
    assert await storage.size(OUTPUT) == len(EVERY_BYTE)


async def test_keys_are_independent(subject: StorageUnderTest) -> None:
    storage = subject.storage

    await storage.put("outputs/job-1/a.png", b"first", content_type="image/png")
    await storage.put("outputs/job-1/b.png", b"second!", content_type="image/png")

    assert await storage.get("outputs/job-1/a.png") == b"first"
    assert await storage.get("outputs/job-1/b.png") == b"second!"
    assert await storage.size("outputs/job-1") is None  # a "directory" is not an object


async def test_put_overwrites(subject: StorageUnderTest) -> None:
    storage = subject.storage
    await storage.put(OUTPUT, b"old content, longer", content_type="image/webp")

    await storage.put(OUTPUT, b"new", content_type="image/webp")

    assert await storage.get(OUTPUT) == b"new"
    assert await storage.size(OUTPUT) == 3


async def test_empty_object(subject: StorageUnderTest) -> None:
    await subject.storage.put(SOURCE, b"", content_type="application/octet-stream")

    assert await subject.storage.size(SOURCE) == 0
    assert await subject.storage.get(SOURCE) == b""


async def test_missing_object(subject: StorageUnderTest) -> None:
    assert await subject.storage.size(SOURCE) is None
    with pytest.raises(NotFound) as caught:
        await subject.storage.get(SOURCE)
    assert caught.value.code == "object_not_found"
    with pytest.raises(NotFound) as caught:
        await subject.storage.open_stream(SOURCE)  # refused on opening, before any byte
    assert caught.value.code == "object_not_found"


async def test_open_stream_reads_the_object_in_bounded_chunks(subject: StorageUnderTest) -> None:
    storage = subject.storage
    large = EVERY_BYTE * (3 * CHUNK_BYTES // len(EVERY_BYTE)) + b"tail"
    await storage.put(OUTPUT, large, content_type="image/webp")

    stream = await storage.open_stream(OUTPUT)
    try:
        chunks = [chunk async for chunk in stream]
    finally:
        await stream.aclose()

    assert stream.size == len(large)
    assert b"".join(chunks) == large
    assert len(chunks) >= 4  # never the whole object at once
    assert max(len(chunk) for chunk in chunks) <= CHUNK_BYTES


async def test_a_stream_may_be_closed_unread_and_twice_and_may_be_empty(
    subject: StorageUnderTest,
) -> None:
    storage = subject.storage
    await storage.put(OUTPUT, b"bytes", content_type="image/webp")

    stream = await storage.open_stream(OUTPUT)
    await stream.aclose()
    await stream.aclose()

    await storage.put(SOURCE, b"", content_type="application/octet-stream")
    opened = await storage.open_stream(SOURCE)
    assert opened.size == 0
    assert [chunk async for chunk in opened] == []
    await opened.aclose()


async def test_delete_removes_and_tolerates_missing(subject: StorageUnderTest) -> None:
    storage = subject.storage
    await storage.put(OUTPUT, b"bytes", content_type="image/webp")

    await storage.delete(OUTPUT)
    await storage.delete(OUTPUT)  # already gone: not an error

    assert await storage.size(OUTPUT) is None
    with pytest.raises(NotFound):
        await storage.get(OUTPUT)


async def test_ping(subject: StorageUnderTest) -> None:
    await subject.storage.ping()


async def test_presigned_put_uploads_the_bytes(subject: StorageUnderTest) -> None:
    before = datetime.now(UTC)
    presigned = await subject.storage.presign_put(SOURCE, expires_in=900)

    response = await subject.http.put(presigned.url, content=EVERY_BYTE)

    assert response.status_code == 200, response.text
    assert await subject.storage.size(SOURCE) == len(EVERY_BYTE)
    assert await subject.storage.get(SOURCE) == EVERY_BYTE
    # About 900 s from now (loosely: the local clock is pinned when the fixture is built).
    assert before + timedelta(seconds=840) <= presigned.expires_at
    assert presigned.expires_at <= datetime.now(UTC) + timedelta(seconds=901)


async def test_presigned_put_url_is_bound_to_its_key(subject: StorageUnderTest) -> None:
    presigned = await subject.storage.presign_put(SOURCE, expires_in=900)
    other_key = presigned.url.replace("uploads/job-1/source", "uploads/job-2/source")
    assert other_key != presigned.url

    response = await subject.http.put(other_key, content=b"smuggled")

    assert response.status_code == subject.refused_status
    assert await subject.storage.size("uploads/job-2/source") is None


async def test_presigned_put_with_tampered_signature_is_refused(
    subject: StorageUnderTest,
) -> None:
    presigned = await subject.storage.presign_put(SOURCE, expires_in=900)

    response = await subject.http.put(_flip_last_signature_digit(presigned.url), content=b"x")

    assert response.status_code == subject.refused_status
    assert await subject.storage.size(SOURCE) is None


async def test_expired_presigned_put_is_refused(subject: StorageUnderTest) -> None:
    presigned = await subject.storage.presign_put(SOURCE, expires_in=1)

    await subject.wait_until_expired(presigned.expires_at)
    response = await subject.http.put(presigned.url, content=b"late")

    assert response.status_code == subject.refused_status
    assert await subject.storage.size(SOURCE) is None


async def _post(
    subject: StorageUnderTest, post: PresignedPost, data: bytes, **changed: str
) -> httpx.Response:
    """The form upload as a browser would send it: the signed fields (some ``changed``), then
    the file."""
    fields = {**post.fields, **changed}
    return await subject.http.post(post.url, data=fields, files={"file": ("source", data)})


async def test_presigned_post_uploads_up_to_its_limit(subject: StorageUnderTest) -> None:
    post = await subject.storage.presign_post(SOURCE, expires_in=900, max_bytes=len(EVERY_BYTE))

    response = await _post(subject, post, EVERY_BYTE)

    assert response.status_code == 204, response.text
    assert await subject.storage.get(SOURCE) == EVERY_BYTE


async def test_presigned_post_refuses_one_byte_over_its_limit(subject: StorageUnderTest) -> None:
    post = await subject.storage.presign_post(SOURCE, expires_in=900, max_bytes=len(EVERY_BYTE))

    response = await _post(subject, post, EVERY_BYTE + b"x")

    assert response.status_code == subject.too_large_status, response.text
    assert await subject.storage.size(SOURCE) is None


async def test_presigned_post_with_tampered_fields_is_refused(subject: StorageUnderTest) -> None:
    post = await subject.storage.presign_post(SOURCE, expires_in=900, max_bytes=4)
    signature_field = "signature" if "signature" in post.fields else "x-amz-signature"
    signature = post.fields[signature_field]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    other_key = post.fields["key"].replace("job-1", "job-2")
    # The size limit lives in S3's base64 policy and in our own max_bytes field.
    limit_field = "max_bytes" if "max_bytes" in post.fields else "policy"
    raised = post.fields[limit_field].replace("4", "9") if limit_field == "max_bytes" else ""
    if limit_field == "policy":
        policy = json.loads(base64.b64decode(post.fields["policy"]))
        policy["conditions"] = [
            ["content-length-range", 1, 10_000] if isinstance(c, list) else c
            for c in policy["conditions"]
        ]
        raised = base64.b64encode(json.dumps(policy).encode()).decode()

    forged = await _post(subject, post, b"x", **{signature_field: flipped})
    moved = await _post(subject, post, b"x", key=other_key)
    enlarged = await _post(subject, post, b"too large", **{limit_field: raised})

    assert forged.status_code == subject.refused_status, forged.text
    assert moved.status_code == subject.refused_status, moved.text
    assert enlarged.status_code == subject.refused_status, enlarged.text
    assert await subject.storage.size(SOURCE) is None
    assert await subject.storage.size("uploads/job-2/source") is None


def _flip_last_signature_digit(url: str) -> str:
    """The same URL with one hex digit of its signature changed (the signature ends both
    schemes' query strings: ``signature=`` locally, ``X-Amz-Signature=`` on S3)."""
    assert url[-1] in "0123456789abcdef", url
    return url[:-1] + ("0" if url[-1] != "0" else "1")


async def test_stat_gives_size_and_a_version_that_changes_on_replace(
    subject: StorageUnderTest,
) -> None:
    storage = subject.storage
    assert await storage.stat(SOURCE) is None
    await storage.put(SOURCE, b"first upload", content_type="image/png")
    first = await storage.stat(SOURCE)
    assert first is not None and first.size == len(b"first upload") and first.etag

    assert await storage.get(SOURCE, if_match=first.etag) == b"first upload"
    await storage.put(SOURCE, b"replaced after start", content_type="image/png")
    second = await storage.stat(SOURCE)
    assert second is not None and second.etag != first.etag
    with pytest.raises(SourceChanged) as caught:
        await storage.get(SOURCE, if_match=first.etag)
    assert caught.value.code == "source_changed" and not caught.value.transient
    assert await storage.get(SOURCE, if_match=second.etag) == b"replaced after start"


async def test_get_refuses_an_object_past_max_bytes(subject: StorageUnderTest) -> None:
    storage = subject.storage
    # Several network reads' worth: a bounded read must gather them all, not stop at the first.
    data = EVERY_BYTE * 3000
    await storage.put(SOURCE, data, content_type="image/png")

    assert await storage.get(SOURCE, max_bytes=len(data)) == data
    with pytest.raises(SourceTooLarge) as caught:
        await storage.get(SOURCE, max_bytes=len(data) - 1)
    assert caught.value.code == "source_too_large" and not caught.value.transient


async def test_keys_longer_than_1024_are_refused_as_input(subject: StorageUnderTest) -> None:
    key = "uploads/" + "k" * 1100
    for call in (subject.storage.size(key), subject.storage.put(key, b"x", content_type="a/b")):
        with pytest.raises(InvalidInput) as caught:
            await call
        assert caught.value.code == "invalid_object_key"
