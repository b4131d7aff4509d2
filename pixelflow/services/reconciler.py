"""Re-derives the queue from the database, the source of truth.

Safe to run in several workers at once: every action is a compare-and-set or an enqueue keyed
by the job id, so two reconcilers racing do the work once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

from msgspec import Struct

from pixelflow.adapters.queue.protocol import Queue
from pixelflow.adapters.store.protocol import Store
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.models import Job, JobError, JobTask, Transition
from pixelflow.core.states import JobStatus
from pixelflow.services.policy import WorkerPolicy
from pixelflow.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# Jobs read per query; a pass pages through all of them (keyset on the query's order), so a
# backlog larger than a page is never silently cut off.
_PAGE = 500

Page = Callable[[tuple[datetime, str] | None], Awaitable[list[Job]]]


async def _paged(page: Page, key: Callable[[Job], datetime | None]) -> AsyncIterator[Job]:
    after: tuple[datetime, str] | None = None
    while True:
        jobs = await page(after)
        for job in jobs:
            yield job
        if len(jobs) < _PAGE:
            return
        last = jobs[-1]
        at = key(last)
        assert at is not None, "the paged column is never NULL in these queries"
        after = (at, last.id)


class ReconcileReport(Struct, kw_only=True):
    reenqueued: int = 0
    recovered: int = 0
    failed: int = 0


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        queue: Queue,
        policy: WorkerPolicy,
        metrics: Metrics,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.queue = queue
        self.policy = policy
        self.metrics = metrics
        self.clock = clock

    async def run_once(self) -> ReconcileReport:
        report = ReconcileReport()
        now = self.clock()
        expired = _paged(
            lambda after: self.store.expired_leases(now=now, limit=_PAGE, after=after),
            lambda job: job.lease_expires_at,
        )
        async for job in expired:
            await self._recover(job, report, reason="its worker stopped renewing its lease")
        stale = now - timedelta(seconds=self.policy.requeue_grace)
        async for job in self._jobs_in(JobStatus.QUEUED, updated_before=stale):
            if not await self.queue.is_pending(job.id):
                await self._enqueue(job)
                report.reenqueued += 1
                self.metrics.reconciled.labels("reenqueued").inc()
        if report.reenqueued or report.recovered or report.failed:
            log.info("reconciler: %s", report)
        return report

    async def recover_all_processing(self) -> ReconcileReport:
        """At start-up of the embedded single process: every ``processing`` job belonged to
        the previous, dead process, whatever its lease says."""
        report = ReconcileReport()
        far_future = self.clock() + timedelta(days=3650)
        async for job in self._jobs_in(JobStatus.PROCESSING, updated_before=far_future):
            await self._recover(job, report, reason="the process running it stopped")
        return report

    async def enqueue_all_queued(self) -> int:
        far_future = self.clock() + timedelta(days=3650)
        count = 0
        async for job in self._jobs_in(JobStatus.QUEUED, updated_before=far_future):
            await self._enqueue(job)
            count += 1
        return count

    def _jobs_in(self, status: JobStatus, *, updated_before: datetime) -> AsyncIterator[Job]:
        return _paged(
            lambda after: self.store.jobs_in(
                status, updated_before=updated_before, limit=_PAGE, after=after
            ),
            lambda job: job.updated_at,
        )

    async def _recover(self, job: Job, report: ReconcileReport, *, reason: str) -> None:
        now = self.clock()
        error = JobError(code="worker_lost", message=f"attempt {job.attempts}: {reason}")
        exhausted = job.attempts >= self.policy.max_attempts
        change = Transition(
            job_id=job.id,
            expected=frozenset({JobStatus.PROCESSING}),
            target=JobStatus.FAILED if exhausted else JobStatus.QUEUED,
            at=now,
            attempt=job.attempts,
            error=error,
        )
        updated = await self.store.transition(change)
        if updated is None:
            return  # its worker finished after all, or another reconciler got there first
        if exhausted:
            report.failed += 1
            self.metrics.reconciled.labels("failed").inc()
            return
        await self.queue.release(job.id)
        await self._enqueue(updated)
        report.recovered += 1
        self.metrics.reconciled.labels("recovered").inc()

    async def _enqueue(self, job: Job) -> None:
        delay = 0.0
        if job.run_after is not None:
            delay = max(0.0, (job.run_after - self.clock()).total_seconds())
        await self.queue.enqueue(JobTask(job_id=job.id, traceparent=job.traceparent), delay=delay)
