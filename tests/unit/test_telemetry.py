"""Pure pieces of telemetry: metric labels, log formats and context, tracing config."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator

import pytest

from pixelflow.config import ConfigError, Role, load_settings
from pixelflow.core.errors import DatabaseUnavailable
from pixelflow.telemetry import context as log_context
from pixelflow.telemetry.logging import JsonFormatter, TextFormatter, configure_logging
from pixelflow.telemetry.metrics import method_label, route_label
from pixelflow.telemetry.tracing import context_from, open_tracing, trace_id_of
from pixelflow.worker.runner import reconcile_forever

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_route_labels_are_templates_spelled_as_the_original() -> None:
    assert route_label("/v1/jobs/{job_id}/start") == "/v1/jobs/{id}/start"
    assert route_label("/v1/jobs/{job_id}/outputs/{step_id}") == "/v1/jobs/{id}/outputs/{step_id}"
    assert route_label("/v1/objects/{key:path}") == "/v1/objects/{key}"
    assert route_label("/v1/jobs") == "/v1/jobs"
    assert route_label(None) == "unmatched"


def test_unknown_methods_share_one_label() -> None:
    assert [method_label(m) for m in ("GET", "POST", "DELETE")] == ["GET", "POST", "DELETE"]
    assert {method_label(m) for m in ("BREW", "get", "PROPFIND", "X" * 500)} == {"OTHER"}


@contextlib.contextmanager
def captured(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(log_context.ContextFilter())
    logger = logging.getLogger("pixelflow.test.telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def test_json_lines_carry_the_bound_context_and_only_while_bound() -> None:
    logger = logging.getLogger("pixelflow.test.telemetry")
    with captured(JsonFormatter()) as stream:
        with log_context.bound(job_id="job-1", trace_id="ab" * 16):
            log_context.bind(attempt=2, user_id="alice")
            logger.info("line\nwith a newline")
        logger.info("after")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "line\nwith a newline"  # one event, one line
    assert (first["job_id"], first["attempt"], first["trace_id"], first["user_id"]) == (
        "job-1",
        2,
        "ab" * 16,
        "alice",
    )
    assert not {"job_id", "attempt", "trace_id", "user_id"} & set(second)


def test_text_lines_are_readable_and_carry_the_context() -> None:
    logger = logging.getLogger("pixelflow.test.telemetry")
    with captured(TextFormatter()) as stream, log_context.bound(job_id="job-9", attempt=1):
        logger.info("job %s picked up", "job-9")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("pixelflow.test.telemetry: job job-9 picked up job_id=job-9 attempt=1")


async def test_contexts_of_concurrent_tasks_do_not_mix() -> None:
    seen: dict[str, object] = {}

    async def attempt(job_id: str) -> None:
        log_context.bind(job_id=job_id)
        await asyncio.sleep(0.01)
        seen[job_id] = log_context.current()["job_id"]

    await asyncio.gather(*(asyncio.create_task(attempt(f"job-{i}")) for i in range(5)))
    assert seen == {f"job-{i}": f"job-{i}" for i in range(5)}
    assert "job_id" not in log_context.current()


def test_libraries_that_log_payloads_or_urls_are_held_to_warnings() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("debug", "json")
        for name in ("arq.worker", "httpx", "botocore", "aiobotocore"):
            assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
        assert logging.getLogger("pixelflow").getEffectiveLevel() == logging.DEBUG
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_an_unavailable_dependency_skips_reconciler_passes_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No traceback and no line per pass: the dependency watch logs the outage once."""

    class DownReconciler:
        async def run_once(self) -> None:
            raise DatabaseUnavailable("cannot reach PostgreSQL")

    caplog.set_level(logging.DEBUG)
    loop = asyncio.create_task(reconcile_forever(DownReconciler(), 0.01))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    passes = [r for r in caplog.records if "reconciler pass" in r.getMessage()]
    assert len(passes) >= 2  # it kept trying
    assert all(r.exc_info is None and r.levelno == logging.DEBUG for r in passes)


def test_traces_exporter_is_validated_and_service_named_per_role() -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        load_settings(Role.SERVE, {"OTEL_TRACES_EXPORTER": "jaeger"})
    assert load_settings(Role.SERVE, {}).traces_exporter == "none"
    assert load_settings(Role.SERVE, {}).service_name == "pixelflow-serve"
    named = load_settings(
        Role.SERVE, {"OTEL_SERVICE_NAME": "images", "OTEL_TRACES_EXPORTER": "OTLP"}
    )
    assert (named.service_name, named.traces_exporter) == ("images", "otlp")


def test_traceparent_parsing() -> None:
    assert trace_id_of(TRACEPARENT) == "0af7651916cd43dd8448eb211c80319c"
    assert trace_id_of(None) is None
    assert trace_id_of("garbage") is None
    assert trace_id_of("00-" + "0" * 32 + "-b7ad6b7169203331-01") is None
    assert context_from(None) is None


async def test_tracing_off_records_nothing_and_console_spans_are_one_line_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with open_tracing("none", "pixelflow-test") as off:
        assert not off.enabled
        with off.tracer.start_as_current_span("ignored"):
            pass
    async with open_tracing("console", "pixelflow-test") as on:
        assert on.enabled
        with on.tracer.start_as_current_span("child", context=context_from(TRACEPARENT)):
            pass
    (line,) = capsys.readouterr().out.splitlines()
    span = json.loads(line)
    assert span["name"] == "child"
    assert span["context"]["trace_id"] == "0x0af7651916cd43dd8448eb211c80319c"
    assert span["parent_id"] == "0xb7ad6b7169203331"
    assert span["resource"]["attributes"]["service.name"] == "pixelflow-test"
