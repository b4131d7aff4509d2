"""The Store contract for webhooks: events recorded with the outcome, claims, attempts, secrets."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec
import pytest

from pixelflow.adapters.store import statements as sql
from pixelflow.adapters.store.base import SqlStore
from pixelflow.core.models import Job, JobError, Transition, Usage, WebhookAttempt
from pixelflow.core.states import JobStatus
from tests.contract.store.conftest import Database
from tests.contract.store.helpers import S, at, drive, make_job, step

HOOK = "https://receiver.example/hooks"


async def hooked_job(store: SqlStore, status: JobStatus) -> Job:
    job = make_job()
    job.webhook_url = HOOK
    await store.create_job(job)
    return await drive(store, job, status)


@pytest.mark.parametrize(
    ("status", "event"),
    [(S.SUCCEEDED, "job.completed"), (S.FAILED, "job.failed"), (S.CANCELED, "job.canceled")],
)
async def test_a_terminal_transition_records_its_event_in_the_same_transaction(
    store: SqlStore, status: JobStatus, event: str
) -> None:
    job = await hooked_job(store, status)

    events = await store.webhook_events(job.id)
    assert len(events) == 1
    recorded = events[0]
    assert recorded.id.startswith("evt_")
    assert (recorded.event, recorded.url, recorded.user_id) == (event, HOOK, job.user_id)
    assert (recorded.state, recorded.attempts) == ("pending", 0)
    assert recorded.next_attempt_at == job.finished_at
    # The body is the job as the API shows it, plus the event's name and id.
    body = msgspec.json.decode(recorded.payload)
    assert (body["event"], body["event_id"], body["id"], body["job_id"]) == (
        event,
        recorded.id,
        job.id,
        job.id,
    )
    assert body["status"] == status.value
    assert "webhook" not in body
    # The job shows where its delivery stands.
    assert job.webhook is not None
    assert (job.webhook.event_id, job.webhook.state, job.webhook.attempts) == (
        recorded.id,
        "pending",
        0,
    )
    assert await store.get_job(job.id) == job


async def test_a_success_with_usage_records_the_usage_and_the_event_together(
    store: SqlStore,
) -> None:
    """Usage and event both come with the outcome (on PostgreSQL the one-statement write of a
    row and its usage leaves a job with a webhook to the transaction)."""
    usage = Usage(pixels_processed=6, bytes_in=5, bytes_out=4, bytes_saved=1, compute_time_ms=3)
    running = await hooked_job(store, S.PROCESSING)

    done = await store.transition(step(running, S.SUCCEEDED, at(30), usage=usage))

    assert done is not None and done.usage == usage and done.webhook is not None
    assert await store.get_usage(running.id) == usage
    events = await store.webhook_events(running.id)
    assert [(event.id, event.event) for event in events] == [
        (done.webhook.event_id, "job.completed")
    ]
    assert await store.get_job(running.id) == done


async def test_no_event_without_a_webhook_url_or_before_the_outcome(store: SqlStore) -> None:
    plain = await drive(store, await store.create_job(make_job()), S.SUCCEEDED)
    assert await store.webhook_events(plain.id) == []
    assert plain.webhook is None
    running = await hooked_job(store, S.PROCESSING)
    assert await store.webhook_events(running.id) == []


async def test_one_event_per_job_and_outcome(store: SqlStore, database: Database) -> None:
    job = await hooked_job(store, S.FAILED)
    (first,) = await store.webhook_events(job.id)
    # A repeated transition cannot match; a repeated insert (a retried transaction) adds nothing.
    retried = Transition(
        job_id=job.id,
        expected=frozenset({S.PROCESSING}),
        target=S.FAILED,
        at=at(30),
        error=JobError(code="x", message="y"),
    )
    assert await store.transition(retried) is None
    again = msgspec.structs.replace(first, id="evt_other")
    async with store._connection() as conn:
        await conn.execute(sql.insert_webhook_event(again))
    assert await store.webhook_events(job.id) == [first]
    assert await database.count("webhook_events") == 1


async def test_payload_bytes_round_trip_exactly(store: SqlStore) -> None:
    job = await hooked_job(store, S.SUCCEEDED)
    (event,) = await store.webhook_events(job.id)
    (claimed,) = await store.claim_webhook_events(now=at(60), lease_until=at(90), limit=10)
    assert claimed.payload == event.payload
    assert isinstance(claimed.payload, bytes)


async def test_due_events_are_claimed_once_until_the_lease_runs_out(store: SqlStore) -> None:
    job = await hooked_job(store, S.SUCCEEDED)
    due = job.finished_at
    assert due is not None
    assert (
        await store.claim_webhook_events(now=due - timedelta(seconds=1), lease_until=due, limit=5)
        == []
    )

    now = due + timedelta(seconds=1)
    lease = now + timedelta(seconds=10)
    results = await asyncio.gather(
        *(store.claim_webhook_events(now=now, lease_until=lease, limit=5) for _ in range(4))
    )
    claimed = [event for batch in results for event in batch]
    assert [event.job_id for event in claimed] == [job.id]
    assert claimed[0].lease_expires_at == lease

    assert (
        await store.claim_webhook_events(
            now=lease - timedelta(seconds=1), lease_until=lease, limit=5
        )
        == []
    )
    # Its holder died: after the lease, another delivery loop claims it again.
    (again,) = await store.claim_webhook_events(
        now=lease + timedelta(seconds=1), lease_until=lease + timedelta(seconds=20), limit=5
    )
    assert (again.id, again.attempts) == (claimed[0].id, 0)


async def test_attempts_are_rows_fenced_by_their_number(store: SqlStore) -> None:
    job = await hooked_job(store, S.SUCCEEDED)
    (event,) = await store.claim_webhook_events(now=at(10), lease_until=at(20), limit=5)

    first = WebhookAttempt(
        event_id=event.id,
        attempt=1,
        attempted_at=at(11),
        duration_ms=12,
        state="pending",
        status_code=503,
        error="HTTP 503",
        next_attempt_at=at(13),
    )
    assert await store.record_webhook_attempt(first)
    # A second delivery reporting the same attempt (its lease was taken over) records nothing.
    assert not await store.record_webhook_attempt(
        msgspec.structs.replace(first, state="delivered", status_code=200, error=None)
    )
    refreshed = await store.get_job(job.id)
    assert refreshed is not None and refreshed.webhook is not None
    assert (refreshed.webhook.state, refreshed.webhook.attempts) == ("pending", 1)
    assert (refreshed.webhook.last_status, refreshed.webhook.next_attempt_at) == (503, at(13))

    # The lease was released with the attempt: due again at its next attempt time.
    assert await store.claim_webhook_events(now=at(12), lease_until=at(30), limit=5) == []
    (retry,) = await store.claim_webhook_events(now=at(14), lease_until=at(30), limit=5)
    assert retry.attempts == 1
    second = WebhookAttempt(
        event_id=event.id, attempt=2, attempted_at=at(15), duration_ms=7, state="delivered",
        status_code=204,
    )  # fmt: skip
    assert await store.record_webhook_attempt(second)

    rows = await store.webhook_deliveries(event.id)
    assert [(r.attempt, r.status_code, r.error, r.next_attempt_at) for r in rows] == [
        (1, 503, "HTTP 503", at(13)),
        (2, 204, None, None),
    ]
    assert rows[0].duration_ms == 12 and rows[0].attempted_at == at(11)
    (done,) = await store.webhook_events(job.id)
    assert (done.state, done.attempts, done.last_status, done.lease_expires_at) == (
        "delivered",
        2,
        204,
        None,
    )
    assert await store.claim_webhook_events(now=at(100), lease_until=at(200), limit=5) == []


async def test_a_users_secret_is_made_once_even_by_concurrent_callers(store: SqlStore) -> None:
    results = await asyncio.gather(
        *(store.webhook_secret("alice", new_secret=f"whsec_{n}", now=at(n)) for n in range(5))
    )
    assert len({r.secret for r in results}) == 1
    assert (await store.webhook_secret("alice", new_secret="whsec_x", now=at(9))).secret == results[
        0
    ].secret
    bob = await store.webhook_secret("bob", new_secret="whsec_bob", now=at(1))
    assert bob.secret == "whsec_bob"


async def test_rotation_keeps_the_previous_secret_for_the_overlap(store: SqlStore) -> None:
    first = await store.webhook_secret("alice", new_secret="whsec_one", now=at(0))
    rotated = await store.rotate_webhook_secret(
        "alice", new_secret="whsec_two", now=at(10), overlap=timedelta(hours=24)
    )
    assert (rotated.secret, rotated.previous_secret) == ("whsec_two", first.secret)
    assert rotated.previous_expires_at == at(10) + timedelta(hours=24)
    assert rotated.signing(at(11)) == ["whsec_two", "whsec_one"]
    assert (await store.webhook_secret("alice", new_secret="whsec_x", now=at(20))) == rotated
    # Rotating before any secret exists makes the first one.
    fresh = await store.rotate_webhook_secret(
        "carol", new_secret="whsec_c", now=at(0), overlap=timedelta(hours=24)
    )
    assert (fresh.secret, fresh.previous_secret) == ("whsec_c", None)
