"""Request telemetry: metrics labelled by route template (never the raw path), the request's
span, and the log context of everything the request logs."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import Span, get_current_span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixelflow.telemetry import context as log_context
from pixelflow.telemetry.metrics import Metrics, method_label, route_label
from pixelflow.telemetry.tracing import Tracing, current_trace_id, trace_id_of


def scope_route(scope: Scope) -> str:
    """The metric label of the route this request matched (``unmatched`` if none)."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    return route_label(str(template) if template is not None else None)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.observe_request(
                method_label(scope["method"]),
                scope_route(scope),
                str(status),
                time.perf_counter() - started,
            )


class TracingMiddleware:
    """The request's server span (OpenTelemetry's ASGI middleware) when tracing is on, named
    by route template once routing is done; binds the trace id for the request's logs.

    ``tracing`` is read per request: it belongs to the app context, opened in the lifespan."""

    def __init__(self, app: ASGIApp, *, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing
        self._traced: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.tracing.enabled:
            trace_id = trace_id_of(_traceparent(scope))
            if trace_id is None:  # nothing to add to the request's logs
                await self.app(scope, receive, send)
                return
            with log_context.bound(trace_id=trace_id):
                await self.app(scope, receive, send)
            return
        if self._traced is None:
            self._traced = OpenTelemetryMiddleware(
                self._named,
                tracer_provider=self.tracing.provider,
                default_span_details=lambda s: (method_label(s.get("method", "")), {}),
                server_request_hook=_redact_query,
                exclude_spans=["receive", "send"],
            )
        await self._traced(scope, receive, send)

    async def _named(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = get_current_span()

        async def send_named(message: Message) -> None:
            # Routing is done by the time the response starts, and the span is still open.
            if message["type"] == "http.response.start":
                route = scope_route(scope)
                span.update_name(f"{method_label(scope['method'])} {route}")
                span.set_attribute("http.route", route)
            await send(message)

        with log_context.bound(trace_id=current_trace_id()):
            await self.app(scope, receive, send_named)


def _redact_query(span: Span, scope: dict[str, Any]) -> None:
    # Signed object URLs carry their signature in the query string: keep it out of traces.
    if scope.get("query_string"):
        for attribute in ("http.url", "url.full", "http.target"):
            span.set_attribute(attribute, str(scope.get("path", "")) + "?REDACTED")
        span.set_attribute("url.query", "REDACTED")


def _traceparent(scope: Scope) -> str:
    # The last one wins, as a dict of the headers would have it; no dict built per request.
    header = b""
    for name, value in scope.get("headers") or ():
        if name == b"traceparent":
            header = value
    return header.decode("latin-1")
