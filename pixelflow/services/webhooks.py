"""Webhook delivery: a loop of its own that claims due events from the store and sends them.

The store is the truth: an event is recorded with the transition that caused it, claimed with
a compare-and-set lease, and every attempt is a row. Nothing here runs inside an image-
processing attempt, and nothing rides on the queue, so a worker killed mid-delivery or a Redis
that lost its data loses no delivery: the lease runs out and the next pass (in any worker, or
the restarted ``serve``) claims the event again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta

from opentelemetry.trace import NoOpTracer, SpanKind, Tracer, get_current_span

from pixelflow.adapters.store.protocol import Store
from pixelflow.adapters.webhook.protocol import SendFailed, WebhookClient, WebhookRequest
from pixelflow.core import signing, webhooks
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import InvalidInput, PixelflowError, Unavailable
from pixelflow.core.models import WebhookAttempt, WebhookEvent
from pixelflow.services.address_guard import AddressGuard
from pixelflow.services.policy import WebhookPolicy
from pixelflow.services.webhook_secrets import SigningSecrets
from pixelflow.telemetry import context as log_context
from pixelflow.telemetry.metrics import Metrics
from pixelflow.telemetry.tracing import context_from, current_trace_id, end_error, trace_id_of

log = logging.getLogger(__name__)


class WebhookDeliverer:
    def __init__(
        self,
        *,
        store: Store,
        client: WebhookClient,
        guard: AddressGuard,
        secrets: SigningSecrets,
        policy: WebhookPolicy,
        clock: Clock = utc_now,
        jitter: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.guard = guard
        self.secrets = secrets
        self.policy = policy
        self.clock = clock
        self.jitter = jitter
        self.metrics = metrics
        self.tracer: Tracer = tracer or NoOpTracer()
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Look for due events now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the attempts in flight, then let ``run_forever`` return."""
        self._stopping = True
        self._wake.set()

    async def run_once(self) -> int:
        """Claim the due events (up to the batch size) and deliver them concurrently."""
        now = self.clock()
        # The lease outlives the longest attempt, so no second delivery starts while one runs.
        lease = timedelta(seconds=self.policy.timeout + self.policy.lease_margin)
        events = await self.store.claim_webhook_events(
            now=now, lease_until=now + lease, limit=self.policy.batch
        )
        results = await asyncio.gather(
            *(self.deliver(event) for event in events), return_exceptions=True
        )
        for event, result in zip(events, results, strict=True):
            if isinstance(result, BaseException):
                # Nothing was recorded: the claim runs out and the attempt is made again.
                log.error("webhook %s: attempt not recorded", event.id, exc_info=result)
        return len(events)

    async def run_forever(self) -> None:
        while not self._stopping:
            try:
                claimed = await self.run_once()
            except Unavailable as exc:
                # An outage: the dependency watch reports it once; try again next poll.
                log.debug("webhook delivery pass skipped: %s", exc.message)
                claimed = 0
            except Exception:
                log.exception("webhook delivery pass failed")
                claimed = 0
            if claimed >= self.policy.batch or self._stopping:
                continue  # more may be due right now (or it is time to stop)
            self._wake.clear()
            try:
                async with asyncio.timeout(self.policy.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def deliver(self, event: WebhookEvent) -> bool:
        """One attempt for a claimed event; True if its result was recorded. A span in the
        job's trace, and log lines carrying the job's context."""
        traceparent = await self._traceparent(event.job_id)
        with (
            self.tracer.start_as_current_span(
                "pixelflow.webhook.deliver",
                context=context_from(traceparent),
                kind=SpanKind.CLIENT,
                attributes={
                    "pixelflow.job_id": event.job_id,
                    "pixelflow.webhook.event": event.event,
                    "pixelflow.webhook.attempt": event.attempts + 1,
                },
            ),
            log_context.bound(
                job_id=event.job_id,
                user_id=event.user_id,
                trace_id=current_trace_id() or trace_id_of(traceparent),
            ),
        ):
            return await self._deliver(event)

    async def _traceparent(self, job_id: str) -> str | None:
        try:
            job = await self.store.get_job(job_id)
        except PixelflowError:
            return None  # the delivery still goes out; its span starts a trace of its own
        return job.traceparent if job is not None else None

    async def _deliver(self, event: WebhookEvent) -> bool:
        number = event.attempts + 1
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        refused = False
        try:
            addresses = await self.guard.addresses(event.url)
            secrets = await self.secrets.signing(event.user_id)
            headers = signing.signature_headers(
                event=event.event,
                event_id=event.id,
                timestamp=int(self.clock().timestamp()),
                body=event.payload,
                secrets=secrets,
            )
            response = await self.client.post(
                WebhookRequest(
                    url=event.url,
                    addresses=addresses,
                    headers=headers,
                    body=event.payload,
                    timeout=self.policy.timeout,
                )
            )
            status = response.status
            if not 200 <= status < 300:
                error = f"HTTP {status}"
                retry_after = webhooks.parse_retry_after(response.retry_after, self.clock())
        except InvalidInput as exc:
            error = exc.code  # the address is no longer allowed (or no longer resolves)
            refused = True
        except SendFailed as exc:
            error = str(exc)
        finished = self.clock()
        outcome = webhooks.decide(number, status, retry_after, self.policy.retry, self.jitter)
        next_at = (
            None if outcome.retry_in is None else finished + timedelta(seconds=outcome.retry_in)
        )
        recorded = await self.store.record_webhook_attempt(
            WebhookAttempt(
                event_id=event.id,
                attempt=number,
                attempted_at=finished,
                duration_ms=round((time.monotonic() - started) * 1000),
                state=outcome.state,
                status_code=status,
                error=error,
                next_attempt_at=next_at,
            )
        )
        log.info(
            "webhook %s %s for job %s, attempt %d: %s → %s%s",
            event.id,
            event.event,
            event.job_id,
            number,
            status if error is None else error,
            outcome.state,
            "" if outcome.retry_in is None else f" (next in {outcome.retry_in:.1f}s)",
        )
        label = "refused" if refused else _OUTCOME_LABELS[outcome.state]
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(label).inc()
            self.metrics.webhook_delivery_duration.labels(label).observe(time.monotonic() - started)
        span = get_current_span()
        span.set_attribute("pixelflow.webhook.outcome", label)
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if label != "delivered":
            end_error(span, label)
        if not recorded:
            log.warning("webhook %s: attempt %d was taken over; result dropped", event.id, number)
        return recorded


# pixelflow_webhook_deliveries_total{outcome} (telemetry.metrics.WEBHOOK_OUTCOMES)
_OUTCOME_LABELS = {"delivered": "delivered", "pending": "retrying", "failed": "gave_up"}
