"""The OpenAPI 3.1 document, built from the app's routes (each ``ApiRoute`` declares a ``Spec``)
and the msgspec Structs those specs name: nothing here is written by hand per route."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.routing import BaseRoute

from pixelflow import __version__
from pixelflow.api.spec import ApiRoute, Raw, Spec
from pixelflow.core.wire import ErrorBody

_REF = "#/components/schemas/{name}"


def build_openapi(routes: Iterable[BaseRoute], *, bearer: bool = False) -> dict[str, Any]:
    """The document; ``bearer`` (``api_key`` mode) declares the API key scheme, so that /docs
    offers to "Authorize" its "Try it out" calls with a key."""
    api_routes = [route for route in routes if isinstance(route, ApiRoute)]
    queries = {route.spec.query for route in api_routes if route.spec.query is not None}
    bodies = {ErrorBody} | {t for route in api_routes for t in _body_types(route.spec)}
    ordered = sorted(bodies | queries, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(ordered, ref_template=_REF)
    # A query Struct becomes parameters, not a schema of its own.
    query_fields = {query: components.pop(query.__name__) for query in queries}
    paths: dict[str, dict[str, Any]] = {}
    for route in api_routes:
        fields = query_fields.get(route.spec.query) if route.spec.query else None
        paths.setdefault(route.path_format, {})[route.method.lower()] = _operation(route, fields)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "PixelFlow",
            "version": __version__,
            "description": "Asynchronous image-processing jobs: create, upload, start, track.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if bearer:
        document["components"]["securitySchemes"] = {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key from `pixelflow keys create`: Bearer pf_…",
            }
        }
        document["security"] = [{"apiKey": []}]
    return document


# A form upload (``upload.presigned_post``): its signed fields as given, then the file.
_FORM_UPLOAD: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"}},
    "additionalProperties": {"type": "string"},
}


def _body_types(spec: Spec) -> list[type[Any]]:
    candidates = [spec.request, *spec.responses.values()]
    return [t for t in candidates if t is not None and not isinstance(t, Raw)]


def _content(body: type[Any] | Raw) -> dict[str, Any] | None:
    if not isinstance(body, Raw):
        return {"application/json": {"schema": {"$ref": _REF.format(name=body.__name__)}}}
    if body.media_type is None:
        return None
    if body.media_type == "multipart/form-data":
        return {body.media_type: {"schema": _FORM_UPLOAD}}
    schema: dict[str, Any] = {"type": "string"}
    if body.media_type != "application/json" and not body.media_type.startswith("text/"):
        schema["contentMediaType"] = body.media_type
    return {body.media_type: {"schema": schema}}


def _response(body: type[Any] | Raw) -> dict[str, Any]:
    description = body.description if isinstance(body, Raw) else "Success"
    response: dict[str, Any] = {"description": description}
    if (content := _content(body)) is not None:
        response["content"] = content
    return response


def _operation(route: ApiRoute, query_fields: Mapping[str, Any] | None) -> dict[str, Any]:
    spec = route.spec
    responses = {str(status): _response(body) for status, body in spec.responses.items()}
    for status in spec.errors:
        responses[str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": _content(ErrorBody),
        }
    operation: dict[str, Any] = {
        "summary": spec.summary,
        "operationId": _operation_id(route),
        "responses": dict(sorted(responses.items())),
    }
    parameters = [*_path_parameters(route), *_header_parameters(spec)]
    if query_fields is not None:
        parameters += _query_parameters(query_fields)
    if parameters:
        operation["parameters"] = parameters
    if spec.request is not None:
        operation["requestBody"] = {"required": True, "content": _content(spec.request)}
    return operation


def _path_parameters(route: ApiRoute) -> list[dict[str, Any]]:
    parameters = []
    for name, convertor in route.param_convertors.items():
        kind = "integer" if isinstance(convertor, IntegerConvertor) else "string"
        if isinstance(convertor, FloatConvertor):
            kind = "number"
        parameters.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
    return parameters


def _header_parameters(spec: Spec) -> list[dict[str, Any]]:
    return [
        {
            "name": header.name,
            "in": "header",
            "required": False,
            "description": header.description,
            "schema": dict(header.schema),
        }
        for header in spec.headers
    ]


def _query_parameters(struct_schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    required = set(struct_schema.get("required", ()))
    parameters = []
    for name, property_schema in struct_schema["properties"].items():
        schema = dict(property_schema)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        parameter["schema"] = schema
        parameters.append(parameter)
    return parameters


def _operation_id(route: ApiRoute) -> str:
    words = route.path_format.strip("/").replace("{", "").replace("}", "").replace(".", "_")
    return "_".join([route.method.lower(), *words.split("/")])
