"""OpenTelemetry tracing, owned by the app context: no global tracer provider is installed.

``OTEL_TRACES_EXPORTER`` picks the exporter: ``none`` (default: spans are not even recorded),
``console`` (one JSON span per line on stdout) or ``otlp`` (OTLP over HTTP, configured by the
standard ``OTEL_EXPORTER_OTLP_*`` variables). A job's trace crosses the queue as a W3C
``traceparent`` carried in its task, so the API request, the worker's spans and the webhook
delivery share one trace id.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import NoOpTracer, Span, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
TRACER_NAME = "pixelflow"


class Tracing:
    """The tracer a process uses; a no-op one when tracing is off."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer(TRACER_NAME) if provider else NoOpTracer()

    def use(self, other: Tracing) -> None:
        """Become ``other`` (an app holds one ``Tracing`` before its context opens one)."""
        self.provider, self.tracer = other.provider, other.tracer

    @property
    def enabled(self) -> bool:
        return self.provider is not None


@contextlib.asynccontextmanager
async def open_tracing(exporter: str, service_name: str) -> AsyncIterator[Tracing]:
    """A tracer provider for ``exporter``, flushed and shut down when the block exits.

    The flush runs in a thread: an unreachable OTLP collector holds it for up to
    ``OTEL_EXPORTER_OTLP_TIMEOUT`` (10 s by default) and must not block the event loop."""
    if exporter == "none":
        yield Tracing()
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(_processor(exporter))
    try:
        yield Tracing(provider)
    finally:
        await asyncio.to_thread(provider.shutdown)


def _processor(exporter: str) -> SimpleSpanProcessor | BatchSpanProcessor:
    if exporter == "console":
        # One line per span, written when the span ends, so a reader can follow it live.
        return SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout, formatter=_one_line))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    otlp: SpanExporter = OTLPSpanExporter()
    return BatchSpanProcessor(otlp)


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the span active now, if there is one."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> Context | None:
    """The remote parent a ``traceparent`` names (``None``: start a new trace)."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id in a ``traceparent`` (for logs, whether or not tracing is on)."""
    parts = (traceparent or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
        return parts[1]
    return None


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def end_error(span: Span, code: str) -> None:
    """Mark ``span`` failed with a domain error code (not an exception: no traceback)."""
    span.set_attribute("pixelflow.error.code", code)
    span.set_status(trace.StatusCode.ERROR, code)
