"""The OpenAPI 3.1 document: schemas generated from the msgspec Structs, routes from a table."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from pixelflow import __version__
from pixelflow.core import wire

_REF = "#/components/schemas/{name}"


class Operation(Struct, frozen=True):
    method: str
    path: str
    summary: str
    success: int
    response: type[Any] | None
    request: type[Any] | None = None
    errors: tuple[int, ...] = ()
    parameters: tuple[tuple[str, str, str], ...] = ()  # (name, in, description)


_JOB_ID = ("job_id", "path", "The job's id.")
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/v1/jobs",
        "Create a job",
        202,
        wire.CreateJobResponse,
        wire.CreateJobRequest,
        (400, 409, 413, 415, 429),
        (("Idempotency-Key", "header", "Replays return the same job for 24 h."),),
    ),
    Operation(
        "get",
        "/v1/jobs",
        "List the caller's jobs, newest first",
        200,
        wire.JobList,
        errors=(400,),
        parameters=(
            ("limit", "query", "1..100, default 20"),
            ("cursor", "query", "next_cursor of the previous page"),
            ("status", "query", "only jobs in this status"),
        ),
    ),
    Operation(
        "get",
        "/v1/jobs/{job_id}",
        "Get a job",
        200,
        wire.JobView,
        errors=(404,),
        parameters=(_JOB_ID,),
    ),
    Operation(
        "post",
        "/v1/jobs/{job_id}/start",
        "Verify the source and enqueue the job",
        202,
        wire.StartJobResponse,
        errors=(404, 409, 413, 429, 503),
        parameters=(_JOB_ID,),
    ),
    Operation(
        "post",
        "/v1/jobs/{job_id}/cancel",
        "Cancel a job that has not finished",
        202,
        wire.JobView,
        errors=(404, 409, 429),
        parameters=(_JOB_ID,),
    ),
    Operation(
        "get",
        "/v1/jobs/{job_id}/outputs/{step_id}",
        "Download an output (redirect to a presigned URL, or the bytes)",
        200,
        None,
        errors=(404, 503),
        parameters=(_JOB_ID, ("step_id", "path", "The step's id.")),
    ),
    Operation("get", "/healthz", "Liveness", 200, wire.HealthStatus),
    Operation(
        "get",
        "/readyz",
        "Readiness of database, queue and storage",
        200,
        wire.HealthStatus,
        errors=(503,),
    ),
)


def build_openapi() -> dict[str, Any]:
    types = {op.request for op in OPERATIONS} | {op.response for op in OPERATIONS}
    types |= {wire.ErrorBody}
    ordered = sorted((t for t in types if t is not None), key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(ordered, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PixelFlow",
            "version": __version__,
            "description": "Asynchronous image-processing jobs: create, upload, start, track.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


def _ref(t: type[Any]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(name=t.__name__)}}}


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if op.response is None:
        responses[str(op.success)] = {"description": "The output's bytes."}
        responses["307"] = {"description": "Redirect to a presigned download URL."}
    else:
        responses[str(op.success)] = {"description": "Success", "content": _ref(op.response)}
    for status in op.errors:
        responses[str(status)] = {"description": "Error", "content": _ref(wire.ErrorBody)}
    body: dict[str, Any] = {
        "summary": op.summary,
        "operationId": _operation_id(op),
        "responses": responses,
    }
    if op.parameters:
        body["parameters"] = [
            {
                "name": name,
                "in": where,
                "required": where == "path",
                "description": text,
                "schema": {"type": "string"},
            }
            for name, where, text in op.parameters
        ]
    if op.request is not None:
        body["requestBody"] = {"required": True, "content": _ref(op.request)}
    return body


def _operation_id(op: Operation) -> str:
    words = op.path.strip("/").replace("{", "").replace("}", "").split("/")
    return "_".join([op.method, *words])
