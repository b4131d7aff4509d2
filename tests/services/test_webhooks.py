"""Webhook delivery against a real receiver on loopback: the real aiohttp client, the real
resolver, SQLite. The end-to-end tests (tests/e2e/test_webhooks.py) repeat the main cases
through real processes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from standardwebhooks import Webhook

from pixelflow.adapters.dns.threaded import ThreadedResolver
from pixelflow.adapters.store.sqlite import SqliteStore
from pixelflow.adapters.webhook.aiohttp_client import AiohttpWebhookClient
from pixelflow.core import signing
from pixelflow.core.errors import Conflict, InvalidInput
from pixelflow.core.models import Job, WebhookEvent
from pixelflow.core.states import JobStatus
from pixelflow.core.webhooks import RetryPolicy
from pixelflow.services.address_guard import AddressGuard
from pixelflow.services.policy import WebhookPolicy
from pixelflow.services.webhook_secrets import SigningSecrets
from pixelflow.services.webhooks import WebhookDeliverer
from tests.contract.store.helpers import drive, make_job
from tests.support.processes import free_port
from tests.support.receiver import Receiver, Reply

SHARED = signing.new_secret()
FAST = WebhookPolicy(
    retry=RetryPolicy(max_attempts=5, initial_backoff=0.05, max_backoff=0.2),
    timeout=1.0,
    lease_margin=1.0,
    poll_interval=0.02,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "pixelflow.db")
    yield opened
    await opened.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


@pytest.fixture
async def resolver() -> AsyncIterator[ThreadedResolver]:
    opened = ThreadedResolver()
    yield opened
    await opened.aclose()


class FixedResolver:
    """Answers every name with fixed addresses (a DNS server we control)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.addresses

    async def aclose(self) -> None:
        pass


def deliverer(
    store: SqliteStore,
    resolver: object,
    *,
    secrets: SigningSecrets | None = None,
    policy: WebhookPolicy = FAST,
    allow_private: bool = True,
) -> WebhookDeliverer:
    return WebhookDeliverer(
        store=store,
        client=AiohttpWebhookClient(),
        guard=AddressGuard(resolver, allow_private=allow_private),  # type: ignore[arg-type]
        secrets=secrets or SigningSecrets(store, shared=SHARED),
        policy=policy,
    )


@contextlib.asynccontextmanager
async def delivering(*deliverers: WebhookDeliverer) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(d.run_forever()) for d in deliverers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def finished_job(
    store: SqliteStore, url: str, status: JobStatus = JobStatus.SUCCEEDED, user: str = "alice"
) -> Job:
    job = make_job(user_id=user)
    job.webhook_url = url
    await store.create_job(job)
    return await drive(store, job, status)


async def settled(store: SqliteStore, job: Job, within: float = 20) -> WebhookEvent:
    """The job's event once it is delivered or failed."""
    async with asyncio.timeout(within):
        while True:
            (event,) = await store.webhook_events(job.id)
            if event.state != "pending":
                return event
            await asyncio.sleep(0.02)


async def test_failing_receiver_gets_one_event_with_a_stable_id_until_it_answers(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    url = receiver.script("/hook", Reply(500), Reply(503), Reply(502), Reply(204))
    job = await finished_job(store, url)
    async with delivering(deliverer(store, resolver)):
        event = await settled(store, job)

    requests = receiver.received("/hook")
    assert len(requests) == 4
    assert {r.headers["webhook-id"] for r in requests} == {event.id}
    assert {r.body for r in requests} == {event.payload}
    assert all(r.verifies_with(SHARED) for r in requests)
    assert not any(r.verifies_with(signing.new_secret()) for r in requests)
    body = msgspec.json.decode(requests[0].body)
    assert (body["event"], body["event_id"], body["id"], body["status"]) == (
        "job.completed",
        event.id,
        job.id,
        "succeeded",
    )
    assert (event.state, event.attempts, event.last_status) == ("delivered", 4, 204)
    rows = await store.webhook_deliveries(event.id)
    assert [(r.attempt, r.status_code) for r in rows] == [(1, 500), (2, 503), (3, 502), (4, 204)]
    assert all(r.next_attempt_at is not None for r in rows[:3]) and rows[3].next_attempt_at is None
    shown = await store.get_job(job.id)
    assert shown is not None and shown.webhook is not None
    assert (shown.webhook.state, shown.webhook.attempts) == ("delivered", 4)


async def test_a_receiver_down_for_the_whole_schedule_fails_the_delivery_only(
    store: SqliteStore, resolver: ThreadedResolver
) -> None:
    job = await finished_job(store, f"http://127.0.0.1:{free_port()}/down")
    async with delivering(deliverer(store, resolver)):
        event = await settled(store, job)

    assert (event.state, event.attempts, event.last_status) == ("failed", 5, None)
    rows = await store.webhook_deliveries(event.id)
    assert len(rows) == 5 and all(r.error and "connection failed" in r.error for r in rows)
    after = await store.get_job(job.id)
    assert after is not None and (after.status, after.attempts) == (JobStatus.SUCCEEDED, 1)


async def test_410_stops_after_one_delivery(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    job = await finished_job(store, receiver.script("/gone", Reply(410)))
    async with delivering(deliverer(store, resolver)):
        event = await settled(store, job)
        await asyncio.sleep(0.3)  # time for retries that must not happen
    assert (event.state, event.attempts, event.last_status) == ("failed", 1, 410)
    assert len(receiver.received("/gone")) == 1


async def test_retry_after_is_honoured(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    policy = msgspec.structs.replace(
        FAST, retry=RetryPolicy(max_attempts=5, initial_backoff=0.05, max_backoff=5)
    )
    url = receiver.script("/busy", Reply(429, {"Retry-After": "2"}), Reply(200))
    job = await finished_job(store, url)
    async with delivering(deliverer(store, resolver, policy=policy)):
        event = await settled(store, job)
    first, second = receiver.received("/busy")
    assert second.at - first.at >= 1.9  # not the 0.05 s the backoff alone would give
    assert (event.state, event.attempts) == ("delivered", 2)


async def test_retry_after_is_capped_by_the_maximum_backoff(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    url = receiver.script("/slow-down", Reply(503, {"Retry-After": "3600"}), Reply(200))
    job = await finished_job(store, url)
    async with delivering(deliverer(store, resolver)):  # max_backoff 0.2 s
        event = await settled(store, job, within=10)
    assert (event.state, event.attempts) == ("delivered", 2)


async def test_a_redirect_is_not_followed(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    target = receiver.url("/elsewhere")
    url = receiver.script("/moved", *[Reply(302, {"Location": target})] * 5)
    job = await finished_job(store, url)
    async with delivering(deliverer(store, resolver)):
        event = await settled(store, job)
    assert receiver.received("/elsewhere") == []
    assert len(receiver.received("/moved")) == 5
    assert (event.state, event.last_status) == ("failed", 302)


async def test_an_attempt_is_bounded_by_the_timeout(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    url = receiver.script("/sleepy", Reply(200, delay=3), Reply(200))
    job = await finished_job(store, url)
    async with delivering(deliverer(store, resolver)):  # timeout 1 s
        event = await settled(store, job)
    first, second = await store.webhook_deliveries(event.id)
    assert (first.status_code, first.error) == (None, "no response within 1s")
    assert first.duration_ms < 2500
    assert (second.status_code, event.state) == (200, "delivered")


@pytest.mark.parametrize(
    ("status", "event_name"),
    [(JobStatus.FAILED, "job.failed"), (JobStatus.CANCELED, "job.canceled")],
)
async def test_failed_and_canceled_jobs_are_delivered_once(
    store: SqliteStore,
    receiver: Receiver,
    resolver: ThreadedResolver,
    status: JobStatus,
    event_name: str,
) -> None:
    job = await finished_job(store, receiver.url("/outcome"), status)
    async with delivering(deliverer(store, resolver), deliverer(store, resolver)):
        await settled(store, job)
        await asyncio.sleep(0.3)
    (request,) = receiver.received("/outcome")
    assert request.headers["x-pixelflow-event"] == event_name
    assert msgspec.json.decode(request.body)["status"] == status.value


async def test_concurrent_delivery_loops_send_each_attempt_once(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    jobs = [await finished_job(store, receiver.url(f"/many/{n}")) for n in range(10)]
    loops = [deliverer(store, resolver) for _ in range(3)]
    async with delivering(*loops):
        for job in jobs:
            await settled(store, job)
    assert sorted(r.path for r in receiver.requests) == sorted(f"/many/{n}" for n in range(10))


async def test_stopping_lets_the_attempt_in_flight_finish_and_be_recorded(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    job = await finished_job(store, receiver.script("/finishing", Reply(200, delay=0.5)))
    loop = deliverer(store, resolver)
    task = asyncio.create_task(loop.run_forever())
    await receiver.wait_for("/finishing", 1)
    loop.stop()
    await asyncio.wait_for(task, 5)
    (event,) = await store.webhook_events(job.id)
    assert (event.state, event.attempts) == ("delivered", 1)


# -- the address guard -------------------------------------------------------------------------


async def test_the_guard_runs_again_at_delivery(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    """A job created while its host was public, whose name now points at loopback (DNS
    rebinding): nothing is sent."""
    job = await finished_job(store, receiver.url("/rebound"))
    async with delivering(deliverer(store, resolver, allow_private=False)):
        event = await settled(store, job)
    assert receiver.received("/rebound") == []
    rows = await store.webhook_deliveries(event.id)
    assert {r.error for r in rows} == {"webhook_url_not_allowed"}


async def test_the_connection_goes_to_the_vetted_address_without_a_second_lookup(
    store: SqliteStore, receiver: Receiver
) -> None:
    # `hooks.invalid` cannot resolve anywhere (RFC 6761): only the vetted answer can be used.
    dns = FixedResolver(["127.0.0.1"])
    job = await finished_job(store, f"http://hooks.invalid:{receiver.port}/pinned")
    async with delivering(deliverer(store, dns)):
        event = await settled(store, job)
    (request,) = receiver.received("/pinned")
    assert request.headers["host"] == f"hooks.invalid:{receiver.port}"
    assert event.state == "delivered"
    assert dns.lookups == ["hooks.invalid"]


async def test_create_time_guard_refuses_private_and_unresolvable_hosts_alike(
    resolver: ThreadedResolver,
) -> None:
    guard = AddressGuard(resolver, allow_private=False)
    errors = []
    for url in ("http://127.0.0.1/h", "http://localhost/h", "http://no-such-host.invalid/h"):
        with pytest.raises(InvalidInput) as refused:
            await guard.check_url(url)
        errors.append((refused.value.code, refused.value.message.split("'")[0]))
    assert set(errors) == {("webhook_url_not_allowed", "webhook_url host ")}
    await AddressGuard(resolver, allow_private=True).check_url("http://127.0.0.1/h")


async def test_the_resolver_answers_empty_for_unknown_names(resolver: ThreadedResolver) -> None:
    assert "127.0.0.1" in await resolver.resolve("localhost", 80)
    assert await resolver.resolve("no-such-host.invalid", 80) == []
    assert await resolver.resolve("10.1.2.3", 80) == ["10.1.2.3"]


async def test_slow_lookups_fill_only_the_resolvers_own_pool() -> None:
    release = threading.Event()

    def stuck(host: str, *args: object) -> list[tuple[object, ...]]:
        release.wait(10)  # a DNS server that never answers
        return []

    slow = ThreadedResolver(workers=2, timeout=0.5, lookup=stuck)
    try:
        started = time.monotonic()
        # More stuck lookups than the default executor has threads (min(32, cores + 4)).
        answers = await asyncio.gather(*(slow.resolve(f"h{n}.example", 443) for n in range(40)))
        assert answers == [[]] * 40  # each bounded by the timeout, "does not resolve"
        assert time.monotonic() - started < 3
        # Meanwhile the loop's default executor (storage and SQLite I/O) is free.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 0.5) == "free"
    finally:
        release.set()
        await slow.aclose()


# -- per-user secrets ----------------------------------------------------------------------------


async def test_each_users_events_verify_with_their_own_secret_only(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    secrets = SigningSecrets(store, shared=None)
    alice_job = await finished_job(store, receiver.url("/alice"), user="alice")
    bob_job = await finished_job(store, receiver.url("/bob"), user="bob")
    async with delivering(deliverer(store, resolver, secrets=secrets)):
        await settled(store, alice_job)
        await settled(store, bob_job)
    alice = (await secrets.get("alice")).secret
    bob = (await secrets.get("bob")).secret
    assert alice != bob and alice.startswith("whsec_")
    (to_alice,) = receiver.received("/alice")
    (to_bob,) = receiver.received("/bob")
    assert to_alice.verifies_with(alice) and not to_alice.verifies_with(bob)
    assert to_bob.verifies_with(bob) and not to_bob.verifies_with(alice)


async def test_after_a_rotation_both_secrets_sign_for_a_day(
    store: SqliteStore, receiver: Receiver, resolver: ThreadedResolver
) -> None:
    secrets = SigningSecrets(store, shared=None)
    old = (await secrets.get("alice")).secret
    rotated = await secrets.rotate("alice")
    assert rotated.secret != old and rotated.previous_expires_at is not None
    job = await finished_job(store, receiver.url("/rotated"))
    async with delivering(deliverer(store, resolver, secrets=secrets)):
        await settled(store, job)
    (request,) = receiver.received("/rotated")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert request.verifies_with(rotated.secret)  # both schemes, the original on the newest
    Webhook(old).verify(request.body, dict(request.headers))  # the old one still verifies
    assert not request.verifies_with(old)  # X-Pixelflow-Signature carries the newest only


async def test_shared_secret_modes_have_no_per_user_secret(store: SqliteStore) -> None:
    secrets = SigningSecrets(store, shared=SHARED)
    for call in (secrets.get, secrets.rotate):
        with pytest.raises(Conflict) as refused:
            await call("alice")
        assert refused.value.code == "webhook_secret_shared"
