"""Rendering pages and fragments with the console's security headers, and reading forms."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pixelflow.api.body import read_body
from pixelflow.api.render import PAGE_HEADERS
from pixelflow.console import views
from pixelflow.console.identity import COOKIE, Caller

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
# A console form (sign-in, cancel) is a few fields: anything larger is not one.
MAX_FORM_BYTES = 16 * 1024


def template_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pixelflow.console", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        bytes=views.human_bytes,
        count=views.human_count,
        time=views.human_time,
        duration=views.human_duration,
        action=views.action_of,
    )
    return env


def with_headers(response: Response, caller: Caller | None, *, secure: bool) -> Response:
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)  # a handler's own choice stands
    if caller is not None and caller.new_session:
        response.set_cookie(
            COOKIE,
            caller.session_id,
            max_age=None,  # a browser-session cookie; the server-side session expires anyway
            path="/console",
            httponly=True,
            samesite="strict",
            secure=secure,
        )
    return response


def html(
    env: Environment,
    template: str,
    context: dict[str, Any],
    *,
    caller: Caller | None,
    secure: bool,
    status: int = 200,
) -> Response:
    body = env.get_template(template).render(**context)
    return with_headers(HTMLResponse(body, status_code=status), caller, secure=secure)


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each)."""
    body = await read_body(request, limit=MAX_FORM_BYTES)
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}
