"""The Store contract, run against every implementation (see conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import get_args

import msgspec
import pytest

from pixelflow.adapters.store.base import Connection, SqlStore
from pixelflow.adapters.store.protocol import Store
from pixelflow.core.errors import Conflict, InvalidInput
from pixelflow.core.models import (
    BlurStep,
    ConvertStep,
    CropStep,
    FlipStep,
    JobError,
    Output,
    ResizeStep,
    RotateStep,
    SharpenStep,
    Step,
    Transition,
    Usage,
    WatermarkOptions,
    WatermarkStep,
)
from pixelflow.core.states import TRANSITIONS, JobStatus
from tests.contract.store.conftest import Database
from tests.contract.store.helpers import T0, S, at, drive, make_job, step

USAGE = Usage(
    pixels_processed=4096, bytes_in=1000, bytes_out=300, bytes_saved=700, compute_time_ms=42
)
OUTPUT = Output(
    step_id="thumb",
    action="resize",
    format="webp",
    object_key="outputs/x/thumb.webp",
    bytes=300,
    width=64,
    height=64,
    content_type="image/webp",
)
ALLOWED = [(source, target) for source, targets in TRANSITIONS.items() for target in targets]
REFUSED = [
    (source, target)
    for source, target in itertools.product(JobStatus, JobStatus)
    if (source, target) not in ALLOWED
]


# -- create / get --------------------------------------------------------------------------


async def test_created_job_reads_back_equal(store: Store) -> None:
    job = make_job()
    job.webhook_url = "https://example.com/hook"
    job.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    job.source_bytes = 1234

    assert await store.create_job(job) == job
    assert await store.get_job(job.id) == job


async def test_get_is_scoped_to_the_owner(store: Store) -> None:
    job = await store.create_job(make_job(user_id="alice"))

    assert await store.get_job(job.id, user_id="alice") == job
    assert await store.get_job(job.id, user_id="bob") is None
    assert await store.get_job("no-such-job") is None


async def test_every_step_type_round_trips(store: Store) -> None:
    pipeline: list[Step] = [
        ResizeStep(id="r", width=800, height=600, fit="cover", upscale=False, format="jpg"),
        WatermarkStep(
            id="w",
            input="r",
            watermark=WatermarkOptions(
                text="© pixelflow", opacity=0.5, gravity="north", size=0.1, color="#ff0000"
            ),
        ),
        CropStep(id="c", input="r", width=100, height=50, gravity="smart", emit=False),
        CropStep(id="c2", input="r", width=100, height=50, x=3, y=4),
        RotateStep(id="rot", input="c", angle=270, strip=False),
        FlipStep(id="f", direction="vertical", quality=80),
        BlurStep(id="b", sigma=1.5, format="png"),
        SharpenStep(id="s", sigma=0.3),
        ConvertStep(id="cv", format="avif", quality=40),
    ]
    assert {type(s) for s in pipeline} == set(get_args(Step)), "a step type is missing here"
    job = await store.create_job(make_job(pipeline=pipeline))

    stored = await store.get_job(job.id)
    assert stored is not None
    assert stored.pipeline == pipeline
    page = await store.list_jobs("alice", limit=10)
    assert page.jobs[0].pipeline == pipeline


# -- idempotency keys ----------------------------------------------------------------------


async def test_same_key_and_request_return_the_first_job(store: Store) -> None:
    first = await store.create_job(make_job(idempotency_key="k", request_hash="h"))
    again = make_job(idempotency_key="k", request_hash="h", created_at=at(60))

    assert await store.create_job(again) == first
    assert await store.get_job(again.id) is None


async def test_same_key_with_another_request_is_a_conflict(store: Store) -> None:
    await store.create_job(make_job(idempotency_key="k", request_hash="h1"))
    other = make_job(idempotency_key="k", request_hash="h2", created_at=at(60))

    with pytest.raises(Conflict) as caught:
        await store.create_job(other)
    assert caught.value.code == "idempotency_key_reused"
    assert await store.get_job(other.id) is None


async def test_keys_belong_to_their_user(store: Store) -> None:
    alice = await store.create_job(make_job(user_id="alice", idempotency_key="k", request_hash="h"))
    bob = await store.create_job(make_job(user_id="bob", idempotency_key="k", request_hash="h2"))

    assert bob.id != alice.id
    assert await store.get_job(bob.id, user_id="bob") == bob


async def test_a_key_older_than_a_day_makes_a_new_job(store: Store) -> None:
    old = await store.create_job(make_job(idempotency_key="k", request_hash="h"))
    day_later = T0 + timedelta(hours=24, seconds=1)
    new = await store.create_job(
        make_job(idempotency_key="k", request_hash="h", created_at=day_later)
    )

    assert new.id != old.id
    assert await store.get_job(old.id) is not None
    # The key now leads to the new job.
    retry = make_job(
        idempotency_key="k", request_hash="h", created_at=day_later + timedelta(seconds=1)
    )
    assert (await store.create_job(retry)).id == new.id


async def test_concurrent_creates_with_one_key_make_one_job(store: Store) -> None:
    attempts = [make_job(idempotency_key="k", request_hash="h") for _ in range(4)]

    created = await asyncio.gather(*(store.create_job(job) for job in attempts))

    assert len({job.id for job in created}) == 1
    assert len((await store.list_jobs("alice", limit=10)).jobs) == 1


# -- listing -------------------------------------------------------------------------------


async def test_list_is_newest_first_and_limited(store: Store) -> None:
    jobs = [await store.create_job(make_job(created_at=at(n))) for n in range(3)]
    await store.create_job(make_job(user_id="bob", created_at=at(10)))

    first = await store.list_jobs("alice", limit=2)
    assert [j.id for j in first.jobs] == [jobs[2].id, jobs[1].id]
    assert first.next_cursor is not None
    last = await store.list_jobs("alice", limit=2, cursor=first.next_cursor)
    assert [j.id for j in last.jobs] == [jobs[0].id]
    assert last.next_cursor is None
    exact = await store.list_jobs("alice", limit=3)
    assert len(exact.jobs) == 3
    assert exact.next_cursor is None


async def test_pages_neither_repeat_nor_skip_jobs_created_at_the_same_time(
    store: Store,
) -> None:
    times = [at(0)] * 7 + [at(-1), at(1), at(1), at(2)]
    jobs = [await store.create_job(make_job(created_at=t)) for t in times]
    expected = [j.id for j in sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)]

    seen: list[str] = []
    cursor = None
    for _ in range(len(jobs)):
        page = await store.list_jobs("alice", limit=3, cursor=cursor)
        seen += [j.id for j in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected


async def test_list_filters_by_status_across_pages(store: Store) -> None:
    queued = []
    for n in range(5):
        job = await store.create_job(make_job(created_at=at(n)))
        if n % 2 == 0:
            queued.append(await drive(store, job, S.QUEUED))

    first = await store.list_jobs("alice", limit=2, status=S.QUEUED)
    assert first.next_cursor is not None
    rest = await store.list_jobs("alice", limit=2, status=S.QUEUED, cursor=first.next_cursor)
    assert [j.id for j in first.jobs + rest.jobs] == [j.id for j in reversed(queued)]
    assert rest.next_cursor is None
    assert (await store.list_jobs("alice", limit=5, status=S.FAILED)).jobs == []


async def test_a_malformed_cursor_is_invalid_input(store: Store) -> None:
    for cursor in ["nonsense!", "bm90IGpzb24", "WzEsMl0"]:  # not base64, not JSON, wrong shape
        with pytest.raises(InvalidInput) as caught:
            await store.list_jobs("alice", limit=2, cursor=cursor)
        assert caught.value.code == "invalid_cursor"


# -- transitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), ALLOWED, ids=lambda s: str(s))
async def test_every_allowed_transition_applies(
    store: Store, source: JobStatus, target: JobStatus
) -> None:
    job = await drive(store, await store.create_job(make_job()), source)

    moved = await store.transition(step(job, target, at(100)))

    assert moved is not None
    assert moved.status is target
    assert await store.get_job(job.id) == moved


async def test_transitions_outside_the_state_machine_are_refused(store: Store) -> None:
    jobs = {s: await drive(store, await store.create_job(make_job()), s) for s in JobStatus}

    for source, target in REFUSED:
        with pytest.raises(ValueError):
            await store.transition(step(jobs[source], target, at(100)))
        stored = await store.get_job(jobs[source].id)
        assert stored is not None and stored.status is source
    with pytest.raises(ValueError):  # one bad source among good ones is enough to refuse
        await store.transition(
            Transition(
                job_id=jobs[S.QUEUED].id,
                expected=frozenset({S.QUEUED, S.SUCCEEDED}),
                target=S.CANCELED,
                at=at(100),
            )
        )
    with pytest.raises(ValueError):
        await store.transition(
            Transition(job_id=jobs[S.QUEUED].id, expected=frozenset(), target=S.CANCELED, at=T0)
        )


async def test_a_transition_from_a_status_the_job_left_does_nothing(store: Store) -> None:
    job = await store.create_job(make_job())
    stale = Transition(job_id=job.id, expected=frozenset({S.QUEUED}), target=S.PROCESSING, at=at(5))

    assert await store.transition(stale) is None
    assert await store.get_job(job.id) == job
    unknown = msgspec.structs.replace(step(job, S.QUEUED, at(5)), job_id="no-such-job")
    assert await store.transition(unknown) is None


async def test_concurrent_claims_have_exactly_one_winner(store: Store) -> None:
    job = await drive(store, await store.create_job(make_job()), S.QUEUED)

    results = await asyncio.gather(
        *(store.transition(step(job, S.PROCESSING, at(10 + n))) for n in range(5))
    )

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].attempts == 1
    assert await store.get_job(job.id) == winners[0]


async def test_cancel_racing_a_claim_has_exactly_one_winner(store: Store) -> None:
    job = await drive(store, await store.create_job(make_job()), S.QUEUED)
    cancel = Transition(
        job_id=job.id, expected=frozenset({S.CREATED, S.QUEUED}), target=S.CANCELED, at=at(10)
    )

    results = await asyncio.gather(
        store.transition(step(job, S.PROCESSING, at(10))), store.transition(cancel)
    )

    assert sum(r is not None for r in results) == 1


async def test_a_stale_attempt_cannot_write(store: Store) -> None:
    job = await drive(store, await store.create_job(make_job()), S.PROCESSING)
    assert job.attempts == 1

    assert await store.transition(step(job, S.SUCCEEDED, at(10), attempt=0)) is None
    assert await store.transition(step(job, S.SUCCEEDED, at(10), attempt=2)) is None
    done = await store.transition(step(job, S.SUCCEEDED, at(10), attempt=1))
    assert done is not None and done.status is S.SUCCEEDED


async def test_each_state_sets_its_timestamps(store: Store) -> None:
    job = await store.create_job(make_job())
    lease = at(40)

    queued = await store.transition(step(job, S.QUEUED, at(1)))
    assert queued is not None
    assert (queued.queued_at, queued.updated_at, queued.started_at) == (at(1), at(1), None)

    claimed = await store.transition(step(queued, S.PROCESSING, at(2), lease_expires_at=lease))
    assert claimed is not None
    assert (claimed.started_at, claimed.updated_at, claimed.queued_at) == (at(2), at(2), at(1))
    assert (claimed.lease_expires_at, claimed.attempts, claimed.finished_at) == (lease, 1, None)

    transient = JobError(code="storage_unavailable", message="try later")
    retry = await store.transition(step(claimed, S.QUEUED, at(3), run_after=at(9), error=transient))
    assert retry is not None
    assert (retry.queued_at, retry.lease_expires_at, retry.run_after) == (at(3), None, at(9))
    assert retry.error == transient

    again = await store.transition(step(retry, S.PROCESSING, at(9)))
    assert again is not None
    assert (again.started_at, again.run_after, again.attempts) == (at(9), None, 2)

    done = await store.transition(
        step(again, S.SUCCEEDED, at(12), outputs=[OUTPUT], source_bytes=1000, source_etag='"e1"')
    )
    assert done is not None
    assert (done.finished_at, done.updated_at, done.lease_expires_at) == (at(12), at(12), None)
    assert (done.outputs, done.source_bytes, done.error) == ([OUTPUT], 1000, None)
    assert done.source_etag == '"e1"'
    assert (done.created_at, done.queued_at, done.started_at) == (T0, at(3), at(9))
    assert await store.get_job(job.id) == done


async def test_failing_and_canceling_record_when_and_why(store: Store) -> None:
    error = JobError(code="invalid_image", message="not an image")
    running = await drive(store, await store.create_job(make_job()), S.PROCESSING)
    failed = await store.transition(step(running, S.FAILED, at(20), error=error))
    assert failed is not None
    assert (failed.error, failed.finished_at, failed.lease_expires_at) == (error, at(20), None)

    fresh = await store.create_job(make_job())
    canceled = await store.transition(step(fresh, S.CANCELED, at(21)))
    assert canceled is not None
    assert (canceled.finished_at, canceled.queued_at) == (at(21), None)


# -- usage ---------------------------------------------------------------------------------


async def test_usage_is_written_with_the_success(store: Store) -> None:
    running = await drive(store, await store.create_job(make_job()), S.PROCESSING)

    done = await store.transition(step(running, S.SUCCEEDED, at(10), usage=USAGE))

    assert done is not None and done.usage == USAGE
    assert await store.get_usage(running.id) == USAGE
    stored = await store.get_job(running.id)
    assert stored is not None and stored.usage == USAGE


async def test_usage_is_not_written_when_the_transition_loses(store: Store) -> None:
    running = await drive(store, await store.create_job(make_job()), S.PROCESSING)
    await store.transition(step(running, S.CANCELED, at(5)))

    assert await store.transition(step(running, S.SUCCEEDED, at(10), usage=USAGE)) is None
    assert await store.get_usage(running.id) is None


async def test_concurrent_successes_each_record_their_own_usage(
    store: Store, database: Database
) -> None:
    """Successes arriving together may share a batch (on PostgreSQL, one round trip of
    one-statement writes): each job gets its own row and usage, and one that lost its
    compare-and-set gets neither."""
    running = [
        await drive(store, await store.create_job(make_job()), S.PROCESSING) for _ in range(6)
    ]
    lost = running[2]
    assert await store.transition(step(lost, S.CANCELED, at(5))) is not None
    usages = [
        Usage(pixels_processed=n, bytes_in=n, bytes_out=n, bytes_saved=0, compute_time_ms=n)
        for n in range(1, 7)
    ]

    done = await asyncio.gather(
        *(
            store.transition(step(job, S.SUCCEEDED, at(10), usage=usage))
            for job, usage in zip(running, usages, strict=True)
        )
    )

    for job, usage, result in zip(running, usages, done, strict=True):
        if job is lost:
            assert result is None
            assert await store.get_usage(job.id) is None
            continue
        assert result is not None and (result.id, result.usage) == (job.id, usage)
        assert await store.get_usage(job.id) == usage
        assert await store.get_job(job.id) == result
    assert await database.count("usage_logs") == 5


async def test_usage_is_upserted_once_per_job(store: Store, database: Database) -> None:
    running = await drive(store, await store.create_job(make_job()), S.PROCESSING)
    partial = Usage(pixels_processed=1, bytes_in=1, bytes_out=1, bytes_saved=0, compute_time_ms=1)
    retry = await store.transition(step(running, S.QUEUED, at(5), usage=partial))
    assert retry is not None and retry.usage == partial
    claimed = await store.transition(step(retry, S.PROCESSING, at(6)))
    assert claimed is not None

    await store.transition(step(claimed, S.SUCCEEDED, at(7), usage=USAGE))

    assert await store.get_usage(running.id) == USAGE
    assert await database.count("usage_logs") == 1
    assert await store.get_usage("no-such-job") is None


async def test_a_claim_returns_what_other_tables_hold_for_the_job(store: Store) -> None:
    """A claim writes only the job's row (one conditional UPDATE, no transaction); the job it
    returns still carries the usage an earlier attempt recorded, as ``get_job`` reads it."""
    running = await drive(store, await store.create_job(make_job()), S.PROCESSING)
    retry = await store.transition(step(running, S.QUEUED, at(5), usage=USAGE))
    assert retry is not None

    claimed = await store.transition(step(retry, S.PROCESSING, at(6)))

    assert claimed is not None and claimed.usage == USAGE and claimed.attempts == 2
    assert await store.get_job(running.id) == claimed


async def test_only_a_transition_with_more_to_write_opens_a_transaction(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start, claim and retry are a single autocommitted compare-and-set; a change that also
    writes a webhook event keeps its transaction (all or nothing), and so does one that writes
    usage, but on PostgreSQL, where one statement writes both."""
    opened: list[JobStatus] = []
    transaction = store._transaction
    target: list[JobStatus] = []

    def counting() -> AbstractAsyncContextManager[Connection]:
        opened.append(target[-1])
        return transaction()

    monkeypatch.setattr(store, "_transaction", counting)
    job = await store.create_job(make_job())
    for status, changes in [
        (S.QUEUED, {}),
        (S.PROCESSING, {}),
        (S.QUEUED, {}),
        (S.PROCESSING, {}),
        (S.QUEUED, {"usage": USAGE}),
        (S.PROCESSING, {}),
        (S.SUCCEEDED, {}),
    ]:
        target.append(status)
        moved = await store.transition(step(job, status, at(len(target)), **changes))
        assert moved is not None and moved.status is status
        job = moved

    # PostgreSQL writes a row and its usage in one statement (a data-modifying WITH) when no
    # webhook event comes with it; SQLite keeps its transaction, which costs no round trips.
    assert opened == ([S.SUCCEEDED] if store.dialect == "postgresql" else [S.QUEUED, S.SUCCEEDED])
    assert job.usage == USAGE and await store.get_job(job.id) == job


# -- leases and the reconciler's queries ---------------------------------------------------


async def test_renew_lease_only_for_the_current_attempt(store: Store) -> None:
    running = await drive(store, await store.create_job(make_job()), S.PROCESSING)
    queued = await drive(store, await store.create_job(make_job()), S.QUEUED)

    assert await store.renew_lease(running.id, attempt=1, until=at(500)) is True
    renewed = await store.get_job(running.id)
    assert renewed is not None and renewed.lease_expires_at == at(500)
    assert await store.renew_lease(running.id, attempt=0, until=at(600)) is False
    assert await store.renew_lease(queued.id, attempt=0, until=at(600)) is False
    assert await store.renew_lease("no-such-job", attempt=1, until=at(600)) is False
    unchanged = await store.get_job(running.id)
    assert unchanged is not None and unchanged.lease_expires_at == at(500)


async def test_jobs_in_lists_stale_jobs_oldest_first(store: Store) -> None:
    stale = [
        await drive(store, await store.create_job(make_job()), S.QUEUED, start=s) for s in (3, 1)
    ]
    await drive(store, await store.create_job(make_job()), S.QUEUED, start=50)
    await store.create_job(make_job(created_at=T0))  # created, older, but not queued

    found = await store.jobs_in(S.QUEUED, updated_before=at(10), limit=10)

    assert [j.id for j in found] == [stale[1].id, stale[0].id]
    assert found[0] == await store.get_job(stale[1].id)
    limited = await store.jobs_in(S.QUEUED, updated_before=at(10), limit=1)
    assert [j.id for j in limited] == [stale[1].id]


async def test_expired_leases_lists_abandoned_attempts(store: Store) -> None:
    jobs = [await drive(store, await store.create_job(make_job()), S.QUEUED) for _ in range(3)]
    leases = [at(20), at(10), at(40)]
    for job, lease in zip(jobs, leases, strict=True):
        await store.transition(step(job, S.PROCESSING, at(5), lease_expires_at=lease))
    await drive(store, await store.create_job(make_job()), S.QUEUED)

    expired = await store.expired_leases(now=at(30), limit=10)

    assert [j.id for j in expired] == [jobs[1].id, jobs[0].id]
    assert [j.id for j in await store.expired_leases(now=at(30), limit=1)] == [jobs[1].id]


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_concurrent_creates_are_all_stored(store: Store) -> None:
    """New jobs created at once are written in batches: every one of them lands."""
    jobs = [make_job(user_id=f"user-{i % 3}") for i in range(40)]
    stored = await asyncio.gather(*(store.create_job(job) for job in jobs))
    assert stored == jobs
    for job in jobs:
        assert await store.get_job(job.id) == job


async def test_a_row_that_cannot_be_written_fails_only_its_own_create(store: Store) -> None:
    """A batch is all or nothing; one bad row (here a second job under a taken id) must not
    take the other creates of its batch down with it."""
    jobs = [make_job() for _ in range(6)]
    clash = msgspec.structs.replace(make_job(), id=jobs[2].id)
    results = await asyncio.gather(
        *(store.create_job(job) for job in [*jobs[:3], clash, *jobs[3:]]),
        return_exceptions=True,
    )
    assert sum(isinstance(r, BaseException) for r in results) == 1
    for job in jobs:
        assert await store.get_job(job.id) == job


async def test_concurrent_transitions_each_get_their_own_answer(store: Store) -> None:
    """Transitions made at once share batches: each caller still gets its own job back, or
    None where its compare-and-set did not match (here: jobs canceled beforehand)."""
    jobs = list(await asyncio.gather(*(store.create_job(make_job()) for _ in range(40))))
    canceled = {job.id for job in jobs[::4]}
    for job in jobs:
        if job.id in canceled:
            await drive(store, job, S.CANCELED)

    results = await asyncio.gather(
        *(
            store.transition(step(job, S.QUEUED, at(5), source_bytes=1000 + n))
            for n, job in enumerate(jobs)
        )
    )

    for n, (job, result) in enumerate(zip(jobs, results, strict=True)):
        if job.id in canceled:
            assert result is None
            continue
        assert result is not None
        assert (result.id, result.status, result.source_bytes) == (job.id, S.QUEUED, 1000 + n)
        assert await store.get_job(job.id) == result


async def test_concurrent_identical_transitions_of_one_job_have_one_winner(store: Store) -> None:
    """Two starts of one job arriving together (a retried request) must not both match."""
    job = await store.create_job(make_job())
    others = list(await asyncio.gather(*(store.create_job(make_job()) for _ in range(4))))

    results = await asyncio.gather(
        *(store.transition(step(j, S.QUEUED, at(5))) for j in [job, *others, job, job])
    )

    mine = [results[0], *results[5:]]
    assert sum(result is not None for result in mine) == 1
    assert all(result is not None for result in results[1:5])


async def test_a_transition_that_cannot_be_written_fails_only_its_own_caller(
    store: Store,
) -> None:
    jobs = list(await asyncio.gather(*(store.create_job(make_job()) for _ in range(6))))
    too_big = 2**64  # fits no integer column: the whole batch fails, then each is tried alone
    sizes = [100, 200, too_big, 400, 500, 600]

    results = await asyncio.gather(
        *(
            store.transition(step(job, S.QUEUED, at(5), source_bytes=size))
            for job, size in zip(jobs, sizes, strict=True)
        ),
        return_exceptions=True,
    )

    assert isinstance(results[2], Exception)
    for job, size, result in zip(jobs, sizes, results, strict=True):
        stored = await store.get_job(job.id)
        assert stored is not None
        if size is too_big:
            assert stored.status is S.CREATED
            continue
        assert not isinstance(result, BaseException) and result == stored
        assert stored.source_bytes == size
