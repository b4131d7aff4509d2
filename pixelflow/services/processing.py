"""One processing attempt of one job: claim → fetch → transform → emit → finish.

Every state change is a compare-and-set fenced by the attempt number, so a worker whose lease
was taken over (or whose job was canceled) can never overwrite the newer truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from msgspec import Struct
from opentelemetry import context as otel_context
from opentelemetry.trace import NoOpTracer, SpanKind, Tracer, get_current_span

from pixelflow.adapters.imaging.protocol import ImageLimits, Imaging, Rendered, StepTiming
from pixelflow.adapters.storage.protocol import ObjectStorage, SourceFiles
from pixelflow.adapters.store.protocol import Store
from pixelflow.core.backoff import backoff
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import (
    DatabaseUnavailable,
    ImageRejected,
    PixelflowError,
    ProcessingTimeout,
    RenderTimeout,
    SourceTooLarge,
    UnexpectedError,
)
from pixelflow.core.formats import output_key
from pixelflow.core.models import Job, JobError, JobTask, Output, Transition, Usage
from pixelflow.core.states import JobStatus
from pixelflow.services.policy import WorkerPolicy
from pixelflow.telemetry import context as log_context
from pixelflow.telemetry.metrics import Metrics
from pixelflow.telemetry.tracing import context_from, current_trace_id, end_error, trace_id_of

log = logging.getLogger(__name__)

Outcome = Literal["succeeded", "failed", "retry", "skipped", "abandoned"]


_ENDED_WITHOUT_OUTPUTS = frozenset({JobStatus.CANCELED, JobStatus.FAILED})


class Attempt(Struct, kw_only=True):
    job_id: str
    outcome: Outcome
    retry_in: float = 0.0
    error: JobError | None = None


class LeaseLost(Exception):
    """This attempt no longer owns the job (its lease was taken over)."""


# A render that ran out of time is tried again at most this many times in all: an impossible
# render would otherwise burn WORKER_JOB_TIMEOUT of CPU on every one of WORKER_MAX_ATTEMPTS.
_RENDER_TIMEOUT_ATTEMPTS = 2


class Processor:
    def __init__(
        self,
        *,
        store: Store,
        storage: ObjectStorage,
        sources: SourceFiles | None,
        imaging: Imaging,
        policy: WorkerPolicy,
        metrics: Metrics,
        tracer: Tracer | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.storage = storage
        self.sources = sources
        self.imaging = imaging
        self.policy = policy
        self.metrics = metrics
        self.tracer: Tracer = tracer or NoOpTracer()
        self.clock = clock
        self._slots = asyncio.Semaphore(policy.max_active_jobs)

    async def process(self, task: JobTask) -> Attempt:
        """One attempt, as one span continuing the job's trace (the task's ``traceparent``);
        every line logged meanwhile carries the job id, the attempt and the trace id."""
        with (
            self.tracer.start_as_current_span(
                "pixelflow.job.process",
                context=context_from(task.traceparent),
                kind=SpanKind.CONSUMER,
                attributes={"pixelflow.job_id": task.job_id},
            ),
            log_context.bound(
                job_id=task.job_id, trace_id=current_trace_id() or trace_id_of(task.traceparent)
            ),
        ):
            log.info("job %s picked up", task.job_id)
            return await self._process(task)

    async def _process(self, task: JobTask) -> Attempt:
        try:
            with self.tracer.start_as_current_span("pixelflow.job.claim"):
                job = await self._claim(task.job_id)
        except DatabaseUnavailable:
            # Still queued in the database: the reconciler enqueues it again once it is back.
            log.warning("job %s: not claimed, the database is unavailable", task.job_id)
            return Attempt(job_id=task.job_id, outcome="skipped")
        if job is None:
            return Attempt(job_id=task.job_id, outcome="skipped")
        log_context.bind(attempt=job.attempts, user_id=job.user_id)
        get_current_span().set_attribute("pixelflow.attempt", job.attempts)
        if job.queued_at is not None and job.started_at is not None:
            self.metrics.queue_wait.observe(
                max(0.0, (job.started_at - job.queued_at).total_seconds())
            )

        started = time.monotonic()
        self.metrics.worker_active_jobs.inc()
        try:
            attempt = await self._run_with_lease(job)
        except DatabaseUnavailable:
            # The outcome could not be recorded (it may even have been, if the connection died
            # during the commit). The job stays `processing` until its lease expires and the
            # reconciler retries it; its outputs stay, for the next attempt overwrites them.
            log.warning(
                "job %s attempt %d: outcome not recorded, the database is unavailable; the "
                "reconciler retries it once the lease expires",
                job.id,
                job.attempts,
            )
            attempt = Attempt(job_id=job.id, outcome="abandoned")
        finally:
            self.metrics.worker_active_jobs.dec()
        elapsed = time.monotonic() - started
        status = attempt.outcome
        self.metrics.worker_jobs.labels(job.source_type, status).inc()
        self.metrics.worker_job_duration.labels(job.source_type, status).observe(elapsed)
        if status in ("succeeded", "failed"):
            self.metrics.worker_job_attempts.labels(status).observe(job.attempts)
        log.info("job %s attempt %d: %s in %.2f s", job.id, job.attempts, status, elapsed)
        return attempt

    async def _claim(self, job_id: str) -> Job | None:
        now = self.clock()
        return await self.store.transition(
            Transition(
                job_id=job_id,
                expected=frozenset({JobStatus.QUEUED}),
                target=JobStatus.PROCESSING,
                at=now,
                begin_attempt=True,
                lease_expires_at=now + timedelta(seconds=self.policy.lease_seconds),
            )
        )

    async def _run_with_lease(self, job: Job) -> Attempt:
        sink = OutputSink(
            self.storage, job.id, limit=self.policy.max_output_bytes, tracer=self.tracer
        )
        work = asyncio.create_task(self._run(job, sink))
        heartbeat = asyncio.create_task(self._heartbeat(job, work))
        try:
            return await work
        except asyncio.CancelledError:
            if heartbeat.done() and isinstance(heartbeat.exception(), LeaseLost):
                log.warning("job %s: lease lost, attempt %d abandoned", job.id, job.attempts)
                # Canceled (or failed) meanwhile: what this attempt wrote must go, as when it
                # learns so at the end. The sink has waited for any write still in flight.
                await self._discard(job, sink.attempted_keys)
                return Attempt(job_id=job.id, outcome="abandoned")
            # Shutting down: hand the job back instead of leaving it to the lease's expiry.
            await asyncio.shield(self._release(job))
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLost):
                await heartbeat

    def _end_attempt(
        self,
        job: Job,
        target: JobStatus,
        *,
        error: JobError | None = None,
        run_after: datetime | None = None,
        outputs: list[Output] | None = None,
        usage: Usage | None = None,
    ) -> Transition:
        """Move the job out of ``processing``, fenced by this attempt's number: it applies
        only while no one else (a cancel, a reconciler) has taken the job over."""
        return Transition(
            job_id=job.id,
            expected=frozenset({JobStatus.PROCESSING}),
            target=target,
            at=self.clock(),
            attempt=job.attempts,
            error=error,
            run_after=run_after,
            outputs=outputs,
            usage=usage,
        )

    async def _release(self, job: Job) -> None:
        stopped = JobError(code="worker_stopped", message="the worker shut down")
        with contextlib.suppress(PixelflowError):
            await self.store.transition(self._end_attempt(job, JobStatus.QUEUED, error=stopped))
        log.info("job %s: handed back to the queue at shutdown", job.id)

    async def _heartbeat(self, job: Job, work: asyncio.Task[Attempt]) -> None:
        interval = self.policy.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            until = self.clock() + timedelta(seconds=self.policy.lease_seconds)
            try:
                owned = await self.store.renew_lease(job.id, attempt=job.attempts, until=until)
            except PixelflowError:
                continue  # the database blinked; the lease is still ours until it expires
            if not owned:
                work.cancel()
                raise LeaseLost(job.id)

    async def _run(self, job: Job, sink: OutputSink) -> Attempt:
        started = time.monotonic()
        phase = "fetching the source"
        try:
            async with asyncio.timeout(self.policy.job_timeout), sink:
                # Fetched before the slot, so reading one job's source overlaps another's
                # render (a job waiting for a slot holds only its source's bytes).
                with self.tracer.start_as_current_span("pixelflow.job.fetch"):
                    source = await self._fetch(job)
                phase = "waiting for a slot"
                # The slot is held until the render has really stopped: ``Imaging.render``
                # returns (or raises) only once libvips is done with the job, timeout included.
                async with self._slots:
                    phase = "rendering"
                    await self._render(job, source, sink)
                # The last output's write goes on after the slot is free for the next job.
                phase = "writing the outputs"
                await sink.flush()
        except TimeoutError:
            message = f"the attempt took longer than {self.policy.job_timeout:g} s ({phase})"
            error: PixelflowError = (
                RenderTimeout(message) if phase == "rendering" else ProcessingTimeout(message)
            )
            return await self._failed(job, error, sink.attempted_keys)
        except PixelflowError as exc:
            return await self._failed(job, exc, sink.attempted_keys)
        except Exception as exc:  # a bug or an unexpected dependency error: retry, then fail
            log.exception("job %s: unexpected error", job.id)
            error = UnexpectedError(f"internal error: {type(exc).__name__}")
            return await self._failed(job, error, sink.attempted_keys)
        compute_ms = int((time.monotonic() - started) * 1000)
        return await self._succeed(job, len(source), sink.outputs, compute_ms)

    async def _render(self, job: Job, source: bytes, sink: OutputSink) -> None:
        timings: list[StepTiming] = []  # appended from the libvips thread
        try:
            await self.imaging.render(
                source,
                job.pipeline,
                ImageLimits(
                    max_pixels=self.policy.max_pixels, max_bytes=self.policy.max_source_bytes
                ),
                on_step=timings.append,
                emit=sink.put,
            )
        finally:
            for timing in timings:  # spans after the fact: libvips ran in another thread
                span = self.tracer.start_span(
                    f"pixelflow.step {timing.action}",
                    start_time=timing.started_ns,
                    attributes={"pixelflow.step_id": timing.step_id},
                )
                span.end(end_time=timing.ended_ns)

    async def _fetch(self, job: Job) -> bytes:
        if job.source_type == "local_file":
            if self.sources is None:
                raise PixelflowError(
                    "local_file sources are disabled on this worker", code="local_file_disabled"
                )
            data = await self.sources.read(job.object_key)
        else:
            data = await self.storage.get(
                job.object_key,
                max_bytes=self.policy.max_source_bytes,
                if_match=job.source_etag,
            )
        if len(data) > self.policy.max_source_bytes:
            raise SourceTooLarge(
                f"the source is {len(data)} bytes; at most {self.policy.max_source_bytes} allowed"
            )
        return data

    async def _succeed(
        self, job: Job, source_bytes: int, outputs: list[Output], compute_ms: int
    ) -> Attempt:
        usage = Usage(
            pixels_processed=sum(o.width * o.height for o in outputs),
            bytes_in=source_bytes,
            bytes_out=sum(o.bytes for o in outputs),
            bytes_saved=sum(max(0, source_bytes - o.bytes) for o in outputs),
            compute_time_ms=compute_ms,
        )
        done = await self.store.transition(
            self._end_attempt(job, JobStatus.SUCCEEDED, outputs=outputs, usage=usage)
        )
        if done is None:
            # Canceled meanwhile, or the lease was taken over: this attempt's work is void.
            await self._discard(job, [output.object_key for output in outputs])
            return Attempt(job_id=job.id, outcome="abandoned")
        self.metrics.pipeline_outputs.inc(len(outputs))
        self.metrics.pixels_processed.inc(usage.pixels_processed)
        self.metrics.bytes_saved.inc(usage.bytes_saved)
        self.metrics.compute_time_ms.inc(usage.compute_time_ms)
        return Attempt(job_id=job.id, outcome="succeeded")

    async def _discard(self, job: Job, keys: Sequence[str]) -> None:
        """Delete a void attempt's outputs, but only from a job that can never succeed.

        Output keys are deterministic (``outputs/<job>/<step>.<ext>``), so the objects this
        attempt wrote are the very objects another attempt writes or has written: deleting
        them while the job is still live (queued, processing) or after it succeeded would take
        a succeeded job's outputs away. Only ``canceled`` and ``failed`` are final without
        outputs, so only then is anything deleted.

        This attempt may also have written *after* the winning attempt: its objects then
        replace the winner's. That is harmless because both rendered the same pipeline from
        the same source bytes (the source is pinned for the job's life by issue 9's ETag
        check), and the encoders are deterministic, so the bytes are the same.
        """
        try:
            current = await self.store.get_job(job.id)
        except PixelflowError:
            return  # cannot tell: keeping an orphan beats deleting a live job's outputs
        if current is None or current.status not in _ENDED_WITHOUT_OUTPUTS:
            return
        await self._delete_objects(keys)

    async def _delete_before_failing(self, job: Job, keys: Sequence[str]) -> None:
        """Delete this attempt's outputs just before it fails the job, but only while it still
        owns the job (renewing its lease proves it): the keys are deterministic, so after a
        takeover they are the live attempt's outputs too."""
        until = self.clock() + timedelta(seconds=self.policy.lease_seconds)
        try:
            owned = await self.store.renew_lease(job.id, attempt=job.attempts, until=until)
        except PixelflowError:
            return  # cannot tell: keeping an orphan beats deleting a live attempt's outputs
        if owned:
            await self._delete_objects(keys)

    async def _delete_objects(self, keys: Sequence[str]) -> None:
        for key in keys:
            with contextlib.suppress(PixelflowError):
                await self.storage.delete(key)

    async def _failed(self, job: Job, exc: PixelflowError, written: Sequence[str] = ()) -> Attempt:
        error = JobError(code=exc.code, message=exc.message)
        end_error(get_current_span(), error.code)
        limit = self.policy.max_attempts
        if isinstance(exc, RenderTimeout):
            limit = min(limit, _RENDER_TIMEOUT_ATTEMPTS)
        retry = exc.transient and job.attempts < limit
        if retry:
            delay = backoff(
                job.attempts, base=self.policy.retry_backoff, cap=self.policy.retry_max_backoff
            )
            run_after = self.clock() + timedelta(seconds=delay)
            change = self._end_attempt(job, JobStatus.QUEUED, error=error, run_after=run_after)
        else:
            delay = 0.0
            change = self._end_attempt(job, JobStatus.FAILED, error=error)
        log.info(
            "job %s attempt %d: %s (%s)%s",
            job.id,
            job.attempts,
            error.code,
            error.message,
            f"; retrying in {delay:.1f} s" if retry else "",
        )
        if not retry and written:
            # A failed job has no outputs: what this attempt wrote or began to write (up to the
            # output cap) goes, before the job reads as failed, so a client never finds a failed
            # job's files. A write that failed may still have been stored.
            await self._delete_before_failing(job, written)
        if await self.store.transition(change) is None:
            return Attempt(job_id=job.id, outcome="abandoned", error=error)
        return Attempt(
            job_id=job.id, outcome="retry" if retry else "failed", retry_in=delay, error=error
        )


class OutputSink:
    """Writes each output to storage as the renderer hands it over, and refuses
    (``output_too_large``, permanent) the output that would take the job past ``limit`` bytes
    in all.

    ``put`` starts the write and returns once the previous one is done, so the renderer goes
    on encoding the next output (or frees its slot) while this one uploads; with the one the
    renderer encodes meanwhile (see ``Imaging.render``), a job holds at most three encoded
    outputs in memory, however many it makes. ``flush`` waits for the last write; a failed
    write raises there or at the next ``put``.

    A write is never cut off: once its request is sent, S3 may store the object whatever the
    client does, even after a delete sent later. So when the attempt ends early (a timeout,
    a lost lease, a shutdown), leaving the sink as an async context manager waits for the
    write in flight (bounded by the storage's own timeouts). ``attempted_keys`` then names
    every object the attempt may have stored."""

    def __init__(self, storage: ObjectStorage, job_id: str, *, limit: int, tracer: Tracer) -> None:
        self.storage = storage
        self.job_id = job_id
        self.limit = limit
        self.tracer = tracer
        # Writes run in tasks of their own (started from the libvips thread): their spans hang
        # under the attempt's span captured here, not under whatever is current there.
        self.trace_context = otel_context.get_current()
        self.outputs: list[Output] = []
        self.attempted_keys: list[str] = []
        self.total = 0
        self._writing: asyncio.Task[None] | None = None

    async def put(self, result: Rendered) -> None:
        size = len(result.data)
        if self.total + size > self.limit:
            raise ImageRejected(
                f"step {result.step_id!r} would take the job's outputs past "
                f"{self.limit} bytes (PIXELFLOW_MAX_OUTPUT_BYTES)",
                code="output_too_large",
            )
        await self.flush()
        self.total += size
        self._writing = asyncio.create_task(self._write(result))

    async def flush(self) -> None:
        writing = self._writing
        if writing is not None:
            # Shielded: cancelling the attempt does not cut the write off (see the class).
            await asyncio.shield(writing)
            self._writing = None

    async def _write(self, result: Rendered) -> None:
        key = output_key(self.job_id, result.step_id, result.format)
        self.attempted_keys.append(key)
        with self.tracer.start_as_current_span(
            "pixelflow.job.emit",
            context=self.trace_context,
            attributes={"pixelflow.step_id": result.step_id, "pixelflow.bytes": len(result.data)},
        ):
            await self.storage.put(key, result.data, content_type=result.content_type)
        self.outputs.append(
            Output(
                step_id=result.step_id,
                action=result.action,
                format=result.format,
                object_key=key,
                bytes=len(result.data),
                width=result.width,
                height=result.height,
                content_type=result.content_type,
            )
        )

    async def __aenter__(self) -> OutputSink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            # Awaited, so a failed write is not logged as never retrieved; what it raised
            # matters only when the attempt was still going to succeed, and then flush raised.
            with contextlib.suppress(Exception):
                await asyncio.shield(writing)
