"""The slices of configuration each service needs (built from Settings by the runtime)."""

from __future__ import annotations

from msgspec import Struct

from pixelflow.core.webhooks import RetryPolicy
from pixelflow.core.wire import LIST_LIMIT_MAX


class JobPolicy(Struct, kw_only=True, frozen=True):
    max_steps: int = 32
    max_source_bytes: int = 50 * 1024 * 1024
    presign_expiry: int = 900
    list_limit_max: int = LIST_LIMIT_MAX
    # The pipeline cost check's worst-case source and budget in seconds (core.cost); 0: off.
    max_source_pixels: int = 100_000_000
    pipeline_budget: float = 180.0


class WorkerPolicy(Struct, kw_only=True, frozen=True):
    max_pixels: int = 100_000_000
    max_source_bytes: int = 50 * 1024 * 1024
    max_output_bytes: int = 256 * 1024 * 1024
    max_attempts: int = 5
    job_timeout: float = 180.0
    max_active_jobs: int = 1
    retry_backoff: float = 2.0
    retry_max_backoff: float = 300.0
    lease_seconds: float = 30.0
    # A queued job this old that the queue does not know about is re-enqueued.
    requeue_grace: float = 30.0


class WebhookPolicy(Struct, kw_only=True, frozen=True):
    retry: RetryPolicy = RetryPolicy()
    timeout: float = 10.0  # per attempt
    # A claim's lease lasts the attempt's timeout plus this, so it never ends mid-attempt.
    lease_margin: float = 5.0
    batch: int = 16  # events claimed (and sent concurrently) per pass
    poll_interval: float = 1.0
