"""Every ObjectStorage implementation, each with the HTTP side that serves its presigned URLs.

S3 URLs are served by SeaweedFS itself. Local URLs are served by the API; here a minimal stand-in
app does what the API's object route does (the real ``ObjectService``: ``verify`` then
``put_stream``), reached through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pixelflow.adapters.storage.local import LocalObjectStorage
from pixelflow.adapters.storage.protocol import ObjectStorage
from pixelflow.adapters.storage.s3 import S3ObjectStorage
from pixelflow.core.errors import PayloadTooLarge, Unauthorized
from pixelflow.core.validation import decode_query
from pixelflow.core.wire import SignedPostFields, SignedUrlQuery
from pixelflow.services.objects import ObjectService
from tests.support.seaweed import SeaweedServer

PUBLIC_URL = "http://pixelflow.test"


class SettableClock:
    """A clock the test moves by hand, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class StorageUnderTest:
    storage: ObjectStorage
    # Sends requests to presigned URLs wherever they point (S3 server, or the API stand-in).
    http: httpx.AsyncClient
    # What the URL's server answers to a forged or expired URL.
    refused_status: int
    # What it answers to a form upload over the signed size limit.
    too_large_status: int
    clock: SettableClock | None = None

    async def wait_until_expired(self, expires_at: datetime) -> None:
        if self.clock is not None:
            self.clock.now = expires_at + timedelta(seconds=1)
            return
        # S3 checks the expiry against its own clock: wait for real. A one-second URL plus a
        # margin for the whole-second X-Amz-Date keeps this at about 2.5 s.
        delay = (expires_at - datetime.now(UTC)).total_seconds() + 1.5
        await asyncio.sleep(max(delay, 0.0))


@pytest.fixture(scope="session")
def bucket() -> str:
    """A fresh bucket per test session, so runs never see each other's objects."""
    return f"pixelflow-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def s3_storage(seaweed: SeaweedServer, bucket: str) -> AsyncIterator[S3ObjectStorage]:
    """S3 storage with a fresh key prefix per test, inside the session's bucket."""
    storage = await open_s3(seaweed, bucket, prefix=_unique_prefix())
    yield storage
    await storage.close()


def _unique_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def open_s3(
    server: SeaweedServer, bucket: str, *, prefix: str = "", create_bucket: bool = True
) -> S3ObjectStorage:
    endpoint = server.endpoint
    return await S3ObjectStorage.open(
        bucket,
        prefix=prefix,
        endpoint_url=endpoint.endpoint_url,
        region=endpoint.region,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        create_bucket=create_bucket,
    )


@pytest.fixture(params=["local", "s3"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[StorageUnderTest]:
    if request.param == "local":
        clock = SettableClock()
        root = request.getfixturevalue("tmp_path") / "objects"
        local = await LocalObjectStorage.open(
            root, public_url=PUBLIC_URL, secret=b"test-secret", clock=clock
        )
        transport = httpx.ASGITransport(app=object_routes(local, clock))
        async with httpx.AsyncClient(transport=transport, timeout=10.0) as http:
            yield StorageUnderTest(
                storage=local, http=http, refused_status=401, too_large_status=413, clock=clock
            )
        await local.close()
    else:
        # Only synchronous fixtures can be requested from here (the S3 server, the bucket name).
        server = request.getfixturevalue("seaweed")
        s3 = await open_s3(server, request.getfixturevalue("bucket"), prefix=_unique_prefix())
        async with httpx.AsyncClient(timeout=10.0) as http:
            yield StorageUnderTest(storage=s3, http=http, refused_status=403, too_large_status=400)
        await s3.close()


def object_routes(storage: LocalObjectStorage, clock: SettableClock) -> Starlette:
    """What the API does for ``PUT /v1/objects/{key}``, minus body limits and error rendering."""
    objects = ObjectService(storage, clock=clock)

    async def put_object(request: Request) -> Response:
        signed = decode_query(request.query_params, SignedUrlQuery)
        try:
            await objects.upload(request.path_params["key"], signed, request.stream())
        except Unauthorized as exc:
            return JSONResponse({"code": exc.code}, status_code=401)
        return Response(status_code=200)

    async def post_object(request: Request) -> Response:
        async with request.form() as form:
            file = form["file"]
            assert isinstance(file, UploadFile)
            fields = {name: value for name, value in form.items() if isinstance(value, str)}
            try:
                await objects.upload_form(
                    decode_query(fields, SignedPostFields), file.size or 0, _read_all(file)
                )
            except Unauthorized as exc:
                return JSONResponse({"code": exc.code}, status_code=401)
            except PayloadTooLarge as exc:
                return JSONResponse({"code": exc.code}, status_code=413)
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/v1/objects/{key:path}", put_object, methods=["PUT"]),
            Route("/v1/objects", post_object, methods=["POST"]),
        ]
    )


async def _read_all(file: UploadFile) -> AsyncIterator[bytes]:
    yield await file.read()
