"""Signed upload/download URLs of the embedded local storage, served by the API itself.

These stand in for S3's presigned URLs, so ``s3_presigned`` jobs work end to end on ``serve``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pixelflow.adapters.storage.protocol import SelfServedStorage
from pixelflow.api.body import read_body
from pixelflow.api.deps import state
from pixelflow.core.clock import utc_now
from pixelflow.core.errors import NotFound


def _storage(request: Request) -> SelfServedStorage:
    storage = state(request).ctx.storage
    if not isinstance(storage, SelfServedStorage):
        raise NotFound("this deployment does not serve objects itself", code="not_found")
    key = request.path_params["key"]
    query = request.query_params
    storage.verify(
        "GET" if request.method == "HEAD" else request.method,
        key,
        query.get("expires", ""),
        query.get("signature", ""),
        now=utc_now(),
    )
    return storage


async def put_object(request: Request) -> Response:
    storage = _storage(request)
    limit = state(request).ctx.settings.max_source_bytes
    data = await read_body(request, limit=limit)
    content_type = request.headers.get("content-type", "application/octet-stream")
    await storage.put(request.path_params["key"], data, content_type=content_type)
    return Response(status_code=200)


async def get_object(request: Request) -> Response:
    storage = _storage(request)
    data = await storage.get(request.path_params["key"])
    return Response(data, media_type="application/octet-stream")


routes = [
    Route("/v1/objects/{key:path}", put_object, methods=["PUT"]),
    Route("/v1/objects/{key:path}", get_object, methods=["GET"]),
]
