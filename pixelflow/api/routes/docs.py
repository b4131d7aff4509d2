"""``/openapi.json`` and a self-contained ``/docs`` page (no CDN: works offline)."""

from __future__ import annotations

import html
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pixelflow.api.render import json_response
from pixelflow.api.spec import ApiRoute, Raw, Spec


async def openapi_json(request: Request) -> Response:
    return json_response(request.app.state.openapi)


async def docs_page(request: Request) -> Response:
    return HTMLResponse(render_docs(request.app.state.openapi))


def render_docs(spec: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(spec['info']['title'])} API</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}"
        "pre{padding:.6rem;overflow:auto}h3{margin-top:2rem}</style></head><body>",
        f"<h1>{html.escape(spec['info']['title'])} {html.escape(spec['info']['version'])}</h1>",
        f"<p>{html.escape(spec['info']['description'])} "
        "Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(
                f"<h3><code>{method.upper()} {html.escape(path)}</code></h3>"
                f"<p>{html.escape(op['summary'])}</p>"
            )
            if "requestBody" in op:
                parts.append(f"<p>Body: {_content_name(op['requestBody']['content'])}</p>")
            statuses = ", ".join(
                f"{status}{' ' + _content_name(r['content']) if 'content' in r else ''}"
                for status, r in op["responses"].items()
            )
            parts.append(f"<p>Responses: {statuses}</p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        parts.append(
            f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>"
            f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def _content_name(content: dict[str, Any]) -> str:
    """A link to the body's schema, or its media type when it has no schema of ours."""
    media_type, body = next(iter(content.items()))
    ref = body["schema"].get("$ref")
    if ref is None:
        return html.escape(media_type)
    name = html.escape(str(ref).rsplit("/", 1)[-1])
    return f"<a href='#{name}'>{name}</a>"


routes = [
    ApiRoute(
        "/openapi.json",
        openapi_json,
        method="GET",
        spec=Spec("This document", {200: Raw("OpenAPI 3.1, as JSON.", "application/json")}),
    ),
    ApiRoute(
        "/docs",
        docs_page,
        method="GET",
        spec=Spec("This document as a web page", {200: Raw("An HTML page.", "text/html")}),
    ),
]
