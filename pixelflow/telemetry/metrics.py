"""Prometheus metrics, in a registry owned by the app context (never the global one).

Names and labels of the original PixelFlow are kept, so existing dashboards keep working.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pixelflow.config import Address, ConfigError

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
        self.worker_active_jobs = Gauge(
            "pixelflow_worker_active_jobs", "Jobs being processed now", registry=r
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
        self.pixels_processed = Counter(
            "pixelflow_usage_pixels_processed_total", "Output pixels produced", registry=r
        )
        self.bytes_saved = Counter(
            "pixelflow_usage_bytes_saved_total", "Bytes saved versus the sources", registry=r
        )
        self.compute_time_ms = Counter(
            "pixelflow_usage_compute_time_ms_total", "Processing time in milliseconds", registry=r
        )


class MetricsServer:
    """Serves ``/metrics`` on its own port, in a background thread of prometheus_client."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @classmethod
    def start(cls, metrics: Metrics, address: Address, *, variable: str) -> MetricsServer:
        try:
            server, thread = start_http_server(
                address.port, addr=address.host, registry=metrics.registry
            )
        except OSError as exc:
            raise ConfigError(f"{variable}: cannot listen on {address} ({exc.strerror})") from exc
        return cls(server, thread)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
