"""``PUT /v1/objects/{key}``: uploads to the embedded local storage through its signed URLs.

These stand in for S3's presigned PUT URLs, so ``s3_presigned`` jobs work end to end on ``serve``.
There is no GET: outputs are downloaded through ``/v1/jobs/{id}/outputs/{step}``, which streams
them, so the storage never issues a signed GET URL.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pixelflow.api.body import body_chunks
from pixelflow.api.deps import state
from pixelflow.api.spec import ApiRoute, Raw, Spec
from pixelflow.core.validation import decode_query
from pixelflow.core.wire import SignedUrlQuery


async def put_object(request: Request) -> Response:
    ctx = state(request).ctx
    signed = decode_query(request.query_params, SignedUrlQuery)
    body = body_chunks(request, limit=ctx.settings.max_source_bytes)
    await ctx.objects.upload(request.path_params["key"], signed, body)
    return Response(status_code=200)


routes = [
    ApiRoute(
        "/v1/objects/{key:path}",
        put_object,
        method="PUT",
        spec=Spec(
            "Upload a source to a signed URL from POST /v1/jobs (embedded storage only)",
            {200: Raw("Stored.")},
            errors=(400, 401, 404, 413, 503),
            request=Raw("The image's bytes.", "application/octet-stream"),
            query=SignedUrlQuery,
        ),
    ),
]
