"""``/openapi.json`` and ``/docs``: Swagger UI on the document, its files shipped in the package
(``pixelflow/console/static/swagger-ui``, served at ``/assets``), so it works offline and "try
it" calls this service. Without JavaScript the page lists the operations and schemas."""

from __future__ import annotations

import html
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pixelflow.api.render import PAGE_HEADERS, json_response
from pixelflow.api.spec import ApiRoute, Raw, Spec


async def openapi_json(request: Request) -> Response:
    return json_response(request.app.state.openapi)


async def docs_page(request: Request) -> Response:
    return HTMLResponse(render_docs(request.app.state.openapi), headers=PAGE_HEADERS)


def render_docs(spec: dict[str, Any]) -> str:
    title = html.escape(f"{spec['info']['title']} API")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{title}</title>",
        "<link rel='stylesheet' href='/assets/swagger-ui/swagger-ui.css'>",
        "<link rel='stylesheet' href='/assets/docs.css'>",
        "<link rel='icon' href='/assets/favicon.svg' type='image/svg+xml'>",
        "<script src='/assets/swagger-ui/swagger-ui-bundle.js' defer></script>",
        "<script src='/assets/docs.js' defer></script>",
        "</head><body>",
        "<header class='docs-top'><a href='/console'>PixelFlow console</a>",
        " · <a href='/openapi.json'>openapi.json</a></header>",
        "<main id='swagger-ui'></main><noscript>",
        f"<h1>{title} {html.escape(spec['info']['version'])}</h1>",
        f"<p>{html.escape(spec['info']['description'])}</p>",
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
    parts.append("</noscript></body></html>")
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
        spec=Spec(
            "This document as an interactive reference (Swagger UI)",
            {200: Raw("An HTML page.", "text/html")},
        ),
    ),
]
