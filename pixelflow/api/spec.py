"""What a route declares about itself, next to its handler; the OpenAPI document is built from it.

A route is an ``ApiRoute``: a Starlette ``Route`` for one method, carrying a ``Spec`` of Python
types (msgspec Structs for bodies and query strings), so the document cannot drift from the code:
the handler decodes its query string with the same Struct (``decode_query``) that the document
describes. To add a route: write the handler, declare ``ApiRoute(path, handler, method=...,
spec=Spec(...))`` in its module's ``routes`` list, and add that list to ``create_app``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import Route


@dataclass(frozen=True)
class Raw:
    """A response that is not a JSON Struct: ``media_type`` None means no body (a redirect,
    an empty 200)."""

    description: str
    media_type: str | None = None


@dataclass(frozen=True)
class Header:
    """A request header the route reads; ``schema`` is its JSON schema."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Spec:
    summary: str
    # Every non-error status the route answers: a Struct type (JSON body) or a ``Raw``.
    responses: Mapping[int, type[Any] | Raw]
    # Statuses answered with an ``ErrorBody``.
    errors: tuple[int, ...] = ()
    # The JSON body's Struct, or a ``Raw`` for another media type (e.g. an upload's bytes).
    request: type[Any] | Raw | None = None
    # The query string's Struct; the handler decodes it with ``core.validation.decode_query``.
    # Optional parameters default to a value or to UNSET (not None: see ``ListJobsQuery``).
    query: type[msgspec.Struct] | None = None
    headers: tuple[Header, ...] = ()


class ApiRoute(Route):
    """A route for one HTTP method, with the ``Spec`` the OpenAPI document is built from."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[[Request], Any],
        *,
        method: str,
        spec: Spec,
    ) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.spec = spec


class PageRoute(Route):
    """A web page for people (the console): HTML, cookies and forms, not part of the API, so
    the OpenAPI document, built from ``ApiRoute``s only, leaves it out."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[[Request], Any],
        *,
        methods: tuple[str, ...] = ("GET",),
    ) -> None:
        super().__init__(path, endpoint, methods=list(methods))
