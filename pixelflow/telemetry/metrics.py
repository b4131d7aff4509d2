"""Prometheus metrics, in a registry owned by the app context (never the global one).

Names and labels of the original PixelFlow are kept, so existing dashboards keep working. Every
label set is bounded: routes are templates spelled as the original's, unknown methods are
``OTHER``, and nothing derived from a job id, a user or a raw path ever becomes a label.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

log = logging.getLogger(__name__)

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
_WEBHOOK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
# The original names the job's path parameter `{id}`; Starlette's routes say `{job_id}`, and
# converters (`{key:path}`) are not part of a template's spelling.
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_RENAMED_PARAMS = {"job_id": "id"}

Refresher = Callable[[], Awaitable[None]]


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


@functools.lru_cache(maxsize=256)  # the app's templates: a few dozen
def route_label(template: str | None) -> str:
    """The metric label of a route template (``None``: no route matched)."""
    if template is None:
        return UNMATCHED_ROUTE
    return _PARAM.sub(lambda m: "{" + _RENAMED_PARAMS.get(m[1], m[1]) + "}", template)


# pixelflow_webhook_deliveries_total{outcome}: what one delivery attempt came to.
WEBHOOK_OUTCOMES = (
    "delivered",  # 2xx
    "retrying",  # failed (timeout, connection, 5xx, 429, ...); another attempt is scheduled
    "gave_up",  # failed with no attempt left, or answered 410 Gone
    "refused",  # the address failed the guard at delivery time (never connected)
)


class Metrics:
    def __init__(self, role: str = "serve") -> None:
        self.registry = CollectorRegistry()
        self._refreshers: list[Refresher] = []
        r = self.registry
        # Which role a target plays: "no worker alive" is the absence of role="worker".
        Gauge(
            "pixelflow_process_info", "This process's role (always 1)", ["role"], registry=r
        ).labels(role).set(1)
        # process_resident_memory_bytes and friends: the worker's memory as the kernel sees it.
        ProcessCollector(registry=r)
        self.api_requests = Counter(
            "pixelflow_api_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=r,
        )
        self.api_request_duration = Histogram(
            "pixelflow_api_request_duration_seconds",
            "HTTP request duration",
            ["method", "route", "status"],
            registry=r,
        )
        # Each label set's pair of series, looked up once: ``labels()`` takes a lock and
        # checks its arguments on every call. Bounded as the label sets are.
        self._request_series: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self.rate_limit_rejections = Counter(
            "pixelflow_api_rate_limit_rejections_total",
            "Requests refused by the rate limiter",
            ["route"],
            registry=r,
        )
        self.rate_limit_fail_open = Counter(
            "pixelflow_api_rate_limit_fail_open_total",
            "Requests let through because the rate limiter's backend was unreachable",
            registry=r,
        )
        self.jobs_enqueued = Counter(
            "pixelflow_queue_jobs_enqueued_total", "Jobs enqueued", ["queue"], registry=r
        )
        self.queue_depth = Gauge(
            "pixelflow_queue_depth",
            "Tasks in the queue (waiting, deferred or running), read at scrape time",
            ["queue"],
            registry=r,
        )
        self.worker_jobs = Counter(
            "pixelflow_worker_jobs_total",
            "Job attempts by outcome",
            ["source_type", "status"],
            registry=r,
        )
        self.worker_job_duration = Histogram(
            "pixelflow_worker_job_duration_seconds",
            "Job attempt duration",
            ["source_type", "status"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.worker_job_attempts = Histogram(
            "pixelflow_worker_job_attempts",
            "Attempts a job took, observed when it succeeds or fails",
            ["status"],
            buckets=_ATTEMPT_BUCKETS,
            registry=r,
        )
        self.worker_active_jobs = Gauge(
            "pixelflow_worker_active_jobs", "Jobs being processed now", registry=r
        )
        self.dependency_up = Gauge(
            "pixelflow_dependency_up",
            "Whether a dependency (database, queue, storage) answered its last probe (1) or not",
            ["dependency"],
            registry=r,
        )
        self.worker_vips_memory = Gauge(
            "pixelflow_worker_vips_memory_bytes",
            "Memory libvips has allocated for pixels now (its own tracked count)",
            registry=r,
        )
        self.pipeline_outputs = Counter(
            "pixelflow_worker_pipeline_outputs_total", "Outputs written", registry=r
        )
        self.queue_wait = Histogram(
            "pixelflow_worker_queue_wait_seconds",
            "Time from queued to processing",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.reconciled = Counter(
            "pixelflow_reconciler_actions_total",
            "Jobs recovered by the reconciler",
            ["action"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "pixelflow_webhook_deliveries_total",
            "Webhook delivery attempts by outcome",
            ["outcome"],
            registry=r,
        )
        self.webhook_delivery_duration = Histogram(
            "pixelflow_webhook_delivery_duration_seconds",
            "Webhook delivery attempt duration",
            ["outcome"],
            buckets=_WEBHOOK_BUCKETS,
            registry=r,
        )
        self.pixels_processed = Counter(
            "pixelflow_usage_pixels_processed_total", "Output pixels produced", registry=r
        )
        self.bytes_saved = Counter(
            "pixelflow_usage_bytes_saved_total", "Bytes saved versus the sources", registry=r
        )
        self.compute_time_ms = Counter(
            "pixelflow_usage_compute_time_ms_total", "Processing time in milliseconds", registry=r
        )

    def observe_request(self, method: str, route: str, status: str, seconds: float) -> None:
        """Count one API request and its duration under its (bounded) labels."""
        labels = (method, route, status)
        series = self._request_series.get(labels)
        if series is None:
            series = (self.api_requests.labels(*labels), self.api_request_duration.labels(*labels))
            self._request_series[labels] = series
        count, duration = series
        count.inc()
        duration.observe(seconds)

    def on_scrape(self, refresh: Refresher) -> None:
        """Run ``refresh`` before each exposition (gauges read from a dependency, e.g. the
        queue's depth): a value is as fresh as the scrape, and no sampler task is needed."""
        self._refreshers.append(refresh)

    def watch_vips_memory(self, read: Callable[[], int | None]) -> None:
        self.worker_vips_memory.set_function(lambda: float(read() or 0))

    async def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text and its content type, refreshed first."""
        for refresh in self._refreshers:
            try:
                await refresh()
            except Exception as exc:  # a scrape must still answer while a dependency is down
                log.debug("metrics refresh failed: %s", exc)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
