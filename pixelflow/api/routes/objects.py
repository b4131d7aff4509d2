"""``PUT /v1/objects/{key}`` and ``POST /v1/objects``: uploads to the embedded local storage
through its signed URLs and signed form fields.

These stand in for S3's presigned PUT URLs and presigned POST forms, so ``s3_presigned`` jobs
work end to end on ``serve``.
There is no GET: outputs are downloaded through ``/v1/jobs/{id}/outputs/{step}``, which streams
them, so the storage never issues a signed GET URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from pixelflow.adapters.storage.protocol import CHUNK_BYTES
from pixelflow.api.body import body_chunks
from pixelflow.api.deps import state
from pixelflow.api.spec import ApiRoute, Raw, Spec
from pixelflow.core.errors import InvalidInput, UnsupportedMediaType
from pixelflow.core.validation import decode_query
from pixelflow.core.wire import SignedPostFields, SignedUrlQuery

# Room for the form's own fields and part headers on top of the file's bytes.
_FORM_OVERHEAD = 64 * 1024


async def put_object(request: Request) -> Response:
    ctx = state(request).ctx
    signed = decode_query(request.query_params, SignedUrlQuery)
    body = body_chunks(request, limit=ctx.settings.max_source_bytes)
    await ctx.objects.upload(request.path_params["key"], signed, body)
    return Response(status_code=200)


async def post_object(request: Request) -> Response:
    """A form upload: the body is bounded while it arrives, the file spooled (to disk past
    1 MiB) by Starlette's parser, then checked against its signed limit before it is written."""
    ctx = state(request).ctx
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType("send the upload as multipart/form-data")
    body = body_chunks(request, limit=ctx.settings.max_source_bytes + _FORM_OVERHEAD)
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException:
        raise InvalidInput("the body is not a valid form upload", code="invalid_form") from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise InvalidInput("the form has no part named 'file'", code="missing_field")
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        signed = decode_query(fields, SignedPostFields)
        await ctx.objects.upload_form(signed, file.size or 0, _file_chunks(file))
    finally:
        await form.close()
    return Response(status_code=204)


async def _file_chunks(file: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await file.read(CHUNK_BYTES):
        yield chunk


routes = [
    ApiRoute(
        "/v1/objects",
        post_object,
        method="POST",
        spec=Spec(
            "Upload a source with the form from POST /v1/jobs (embedded storage only)",
            {204: Raw("Stored.")},
            errors=(400, 401, 404, 413, 415, 503),
            request=Raw(
                "The signed fields of upload.presigned_post, then the image as 'file'.",
                "multipart/form-data",
            ),
        ),
    ),
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
