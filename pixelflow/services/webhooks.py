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
from datetime import datetime, timedelta

from pixelflow.adapters.dns.protocol import Resolver
from pixelflow.adapters.store.protocol import Store
from pixelflow.adapters.webhook.protocol import SendFailed, WebhookClient, WebhookRequest
from pixelflow.core import netpolicy, signing, webhooks
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import Conflict, InvalidInput
from pixelflow.core.models import WebhookAttempt, WebhookEvent
from pixelflow.core.wire import WebhookSecretView
from pixelflow.services.policy import WebhookPolicy

log = logging.getLogger(__name__)


class AddressGuard:
    """Vets a webhook URL's addresses, at create and again before every delivery."""

    def __init__(self, resolver: Resolver, *, allow_private: bool) -> None:
        self.resolver = resolver
        self.allow_private = allow_private

    async def check_url(self, url: str) -> None:
        """At create: the URL's shape always; its addresses unless private ones are allowed."""
        host, port = netpolicy.webhook_host(url)
        if not self.allow_private:
            netpolicy.check_addresses(host, await self.resolver.resolve(host, port))

    async def addresses(self, url: str) -> list[str]:
        """At delivery: the vetted addresses the connection must go to."""
        host, port = netpolicy.webhook_host(url)
        addresses = await self.resolver.resolve(host, port)
        if self.allow_private:
            if not addresses:
                netpolicy.check_addresses(host, addresses)  # the one "not allowed" error
        else:
            netpolicy.check_addresses(host, addresses)
        return addresses


class SigningSecrets:
    """Whose secret signs: the user's own in ``api_key`` mode, else the operator's shared one."""

    def __init__(
        self,
        store: Store,
        *,
        shared: str | None,
        clock: Clock = utc_now,
        new_secret: Callable[[], str] = signing.new_secret,
    ) -> None:
        self.store = store
        self.shared = shared
        self.clock = clock
        self.new_secret = new_secret

    @property
    def per_user(self) -> bool:
        return self.shared is None

    async def signing(self, user_id: str) -> list[str]:
        """The secrets that sign this user's events now, newest first."""
        if self.shared is not None:
            return [self.shared]
        now = self.clock()
        secret = await self.store.webhook_secret(user_id, new_secret=self.new_secret(), now=now)
        return secret.signing(now)

    async def get(self, user_id: str) -> WebhookSecretView:
        self._require_per_user()
        now = self.clock()
        secret = await self.store.webhook_secret(user_id, new_secret=self.new_secret(), now=now)
        return _view(secret.secret, secret.previous_expires_at, now)

    async def rotate(self, user_id: str) -> WebhookSecretView:
        self._require_per_user()
        now = self.clock()
        secret = await self.store.rotate_webhook_secret(
            user_id, new_secret=self.new_secret(), now=now, overlap=webhooks.ROTATION_OVERLAP
        )
        return _view(secret.secret, secret.previous_expires_at, now)

    def _require_per_user(self) -> None:
        if not self.per_user:
            raise Conflict(
                "webhooks are signed with the operator's WEBHOOK_SIGNING_SECRET in this "
                "authentication mode; there is no per-user secret",
                code="webhook_secret_shared",
            )


def _view(secret: str, previous_expires_at: datetime | None, now: datetime) -> WebhookSecretView:
    if previous_expires_at is not None and previous_expires_at <= now:
        previous_expires_at = None
    return WebhookSecretView(secret=secret, previous_expires_at=previous_expires_at)


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
    ) -> None:
        self.store = store
        self.client = client
        self.guard = guard
        self.secrets = secrets
        self.policy = policy
        self.clock = clock
        self.jitter = jitter
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
        """One attempt for a claimed event; True if its result was recorded."""
        number = event.attempts + 1
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
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
        if not recorded:
            log.warning("webhook %s: attempt %d was taken over; result dropped", event.id, number)
        return recorded
