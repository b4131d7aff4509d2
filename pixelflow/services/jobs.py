"""The job lifecycle as the API sees it: create, start, get, list, cancel, outputs."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
from opentelemetry.trace import Link, NoOpTracer, SpanKind, Tracer, get_current_span

from pixelflow.adapters.queue.protocol import Queue
from pixelflow.adapters.storage.protocol import (
    ObjectStorage,
    ObjectStream,
    SelfServedStorage,
    SourceFiles,
)
from pixelflow.adapters.store.protocol import Store
from pixelflow.core.clock import Clock, IdFactory, new_job_id, utc_now
from pixelflow.core.cost import check_cost
from pixelflow.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PixelflowError,
    Unavailable,
)
from pixelflow.core.formats import upload_key
from pixelflow.core.models import (
    Job,
    JobPage,
    JobTask,
    Output,
    Transition,
    WebhookDelivery,
)
from pixelflow.core.states import CANCELABLE, JobStatus
from pixelflow.core.validation import validate_pipeline
from pixelflow.core.wire import (
    CreateJobRequest,
    CreateJobResponse,
    PresignedPostInfo,
    StartJobResponse,
    UploadInfo,
)
from pixelflow.services.address_guard import AddressGuard
from pixelflow.services.policy import JobPolicy
from pixelflow.telemetry.tracing import context_from, current_traceparent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Unstarted:
    """What start needs of a job this process created: none of it ever changes."""

    user_id: str
    source_type: str
    object_key: str


# How many created jobs this process remembers until they are started (about 200 bytes each);
# past it the oldest are forgotten, and start reads them from the store as it would anyway.
_UNSTARTED_LIMIT = 10_000


@dataclass(frozen=True)
class Redirect:
    """Send the client elsewhere for the bytes (a presigned URL of the object store)."""

    url: str


@dataclass(frozen=True)
class OutputBody:
    """Send the bytes from here: ``stream`` is open and the caller must ``aclose()`` it."""

    stream: ObjectStream
    content_type: str


class JobService:
    def __init__(
        self,
        *,
        store: Store,
        queue: Queue,
        storage: ObjectStorage,
        sources: SourceFiles | None,
        policy: JobPolicy,
        guard: AddressGuard,
        clock: Clock = utc_now,
        new_id: IdFactory = new_job_id,
        tracer: Tracer | None = None,
    ) -> None:
        self.tracer: Tracer = tracer or NoOpTracer()
        self.store = store
        self.queue = queue
        self.storage = storage
        self.sources = sources
        self.policy = policy
        self.clock = clock
        self.new_id = new_id
        self.guard = guard
        # Jobs created here and not yet started, by id: their owner and source are immutable,
        # so start can check the source and move the job without reading it back first. Only a
        # shortcut: the move is conditional on the job still being created, and anything else
        # (another process's job, a forgotten one, a failed check) takes the full path.
        self._unstarted: dict[str, _Unstarted] = {}

    # -- create ----------------------------------------------------------------------------

    async def create(
        self,
        user_id: str,
        request: CreateJobRequest,
        *,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> CreateJobResponse:
        validate_pipeline(request.pipeline, max_steps=self.policy.max_steps)
        if self.policy.pipeline_budget > 0:
            check_cost(
                request.pipeline,
                max_pixels=self.policy.max_source_pixels,
                budget_seconds=self.policy.pipeline_budget,
            )
        webhook_url = request.webhook_url or None
        if webhook_url is not None:
            await self.guard.check_url(webhook_url)

        job_id = self.new_id()
        if request.source_type == "local_file":
            object_key = await self._local_key(request.object_key)
        else:
            object_key = upload_key(job_id)

        now = self.clock()
        job = Job(
            id=job_id,
            user_id=user_id,
            status=JobStatus.CREATED,
            source_type=request.source_type,
            object_key=object_key,
            webhook_url=webhook_url,
            pipeline=request.pipeline,
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
            request_hash=_request_hash(request) if idempotency_key else None,
            traceparent=traceparent,
        )
        stored = await self.store.create_job(job)
        if stored.status is JobStatus.CREATED:
            self._remember_unstarted(stored)
        return await self._created_response(stored)

    def _remember_unstarted(self, job: Job) -> None:
        if len(self._unstarted) >= _UNSTARTED_LIMIT:
            del self._unstarted[next(iter(self._unstarted))]  # the oldest
        self._unstarted[job.id] = _Unstarted(job.user_id, job.source_type, job.object_key)

    async def _local_key(self, object_key: str) -> str:
        if self.sources is None:
            raise InvalidInput(
                "local_file sources are disabled: PIXELFLOW_LOCAL_SOURCE_ROOT is not set",
                code="local_file_disabled",
            )
        if not object_key:
            raise InvalidInput("object_key is required for local_file", code="missing_field")
        # size() resolves the key (invalid_source_path for any escape) and looks for the file,
        # in a thread: it follows symlinks, file system calls that stay off the event loop.
        if await self.sources.size(object_key) is None:
            raise InvalidInput(
                f"the local file {object_key!r} does not exist under the local source root",
                code="local_file_missing",
            )
        return object_key

    async def _created_response(self, job: Job) -> CreateJobResponse:
        if job.source_type == "s3_presigned":
            presigned = await self.storage.presign_put(
                job.object_key, expires_in=self.policy.presign_expiry
            )
            post = await self.storage.presign_post(
                job.object_key,
                expires_in=self.policy.presign_expiry,
                max_bytes=self.policy.max_source_bytes,
            )
            upload = UploadInfo(
                object_key=job.object_key,
                presigned_put_url=presigned.url,
                presigned_url_state="ready",
                expires_at=presigned.expires_at,
                presigned_post=PresignedPostInfo(url=post.url, fields=post.fields),
            )
        else:
            upload = UploadInfo(
                object_key=job.object_key, presigned_put_url="", presigned_url_state="not_required"
            )
        return CreateJobResponse(
            job_id=job.id,
            status=job.status,
            upload=upload,
            start_url=f"/v1/jobs/{job.id}/start",
            job_url=f"/v1/jobs/{job.id}",
        )

    # -- start -----------------------------------------------------------------------------

    async def start(self, user_id: str, job_id: str) -> StartJobResponse:
        unstarted = self._unstarted.pop(job_id, None)
        if unstarted is not None and unstarted.user_id == user_id:
            try:
                version = await self._source_version(unstarted.source_type, unstarted.object_key)
            except PixelflowError:
                version = None  # the full path tells why, or that the job has started already
            if version is not None:
                started = await self._queue(job_id, version)
                if started is not None:
                    return started
        job = await self.get(user_id, job_id)
        if job.status is JobStatus.CREATED:
            version = await self._source_version(job.source_type, job.object_key)
            started = await self._queue(job.id, version)
            if started is not None:
                return started
            job = await self.get(user_id, job_id)  # a concurrent start or cancel won the race
        if job.status in {JobStatus.QUEUED, JobStatus.PROCESSING}:
            return self._start_response(job, "already_started")
        raise Conflict(
            f"job {job.id} is {job.status} and cannot be started", code="job_not_startable"
        )

    async def _queue(self, job_id: str, version: tuple[int, str | None]) -> StartJobResponse | None:
        """Move the job from created to queued with its checked source's ``version`` and
        enqueue it; None when the job was not created any more (started or canceled meanwhile,
        or gone)."""
        size, etag = version
        queued = await self.store.transition(
            Transition(
                job_id=job_id,
                expected=frozenset({JobStatus.CREATED}),
                target=JobStatus.QUEUED,
                at=self.clock(),
                source_bytes=size,
                source_etag=etag,
            )
        )
        if queued is None:
            return None
        enqueued = await self._enqueue(queued)
        return self._start_response(queued, "enqueued" if enqueued else "pending_reconcile")

    async def _source_version(self, source_type: str, object_key: str) -> tuple[int, str | None]:
        """The source's size and, for an upload, the version tag the worker must find: the
        upload URL stays valid after start, so the object could be replaced by then."""
        etag: str | None = None
        if source_type == "local_file":
            assert self.sources is not None, "local_file jobs exist only with a source root"
            size = await self.sources.size(object_key)
            missing = f"the local file {object_key!r} no longer exists under the source root"
        else:
            info = await self.storage.stat(object_key)
            size, etag = (info.size, info.etag) if info is not None else (None, None)
            missing = f"the source {object_key!r} has not been uploaded"
        if size is None:
            raise Conflict(missing, code="source_missing")
        if size > self.policy.max_source_bytes:
            raise PayloadTooLarge(
                f"the source is {size} bytes; at most {self.policy.max_source_bytes} are allowed",
                code="source_too_large",
            )
        return size, etag

    async def _enqueue(self, job: Job) -> bool:
        """Whether the queue holds a task for the job now (``enqueue`` answering False means
        one was already there, e.g. put by a reconciler)."""
        # The enqueue joins the job's trace (begun by its create request), linked to the start
        # request's own; the worker's spans continue from it.
        with self.tracer.start_as_current_span(
            "pixelflow.job.enqueue",
            context=context_from(job.traceparent),
            kind=SpanKind.PRODUCER,
            links=[Link(get_current_span().get_span_context())],
            attributes={"pixelflow.job_id": job.id},
        ):
            traceparent = current_traceparent() or job.traceparent
            try:
                await self.queue.enqueue(JobTask(job_id=job.id, traceparent=traceparent))
            except Unavailable:
                # The job is queued in the database, the source of truth: the reconciler will
                # enqueue it once the queue is back, so the client's request still succeeded.
                log.warning("queue unavailable; job %s left for the reconciler", job.id)
                return False
        return True

    def _start_response(
        self, job: Job, state: Literal["enqueued", "pending_reconcile", "already_started"]
    ) -> StartJobResponse:
        return StartJobResponse(
            job_id=job.id,
            status=job.status,
            queue=self.queue.name,
            task_id=job.id,
            state=state,
            enqueued_at=job.queued_at,
        )

    # -- read ------------------------------------------------------------------------------

    async def get(self, user_id: str, job_id: str) -> Job:
        # The store reads the job's usage row with it (one join), so nothing more to fetch.
        job = await self.store.get_job(job_id, user_id=user_id)
        if job is None:
            raise NotFound(f"job {job_id} not found", code="job_not_found")
        return job

    async def list(
        self, user_id: str, *, limit: int, cursor: str | None, status: JobStatus | None
    ) -> JobPage:
        if not 1 <= limit <= self.policy.list_limit_max:
            raise InvalidInput(
                f"limit must be 1..{self.policy.list_limit_max}", code="invalid_parameter"
            )
        return await self.store.list_jobs(user_id, limit=limit, cursor=cursor, status=status)

    async def download(self, user_id: str, job_id: str, step_id: str) -> Redirect | OutputBody:
        """How to hand an output to its owner: a redirect when the store can serve it itself,
        else its bytes as a stream (never read whole into memory)."""
        output = await self.output(user_id, job_id, step_id)
        url = await self.storage.download_url(
            output.object_key, expires_in=self.policy.presign_expiry
        )
        if url is not None:
            return Redirect(url)
        return await self._open(output)

    async def open_output(self, user_id: str, job_id: str, step_id: str) -> OutputBody:
        """An output's bytes as a stream, never a redirect: the console serves them from its
        own origin (its pages load nothing from another one, the object store included)."""
        return await self._open(await self.output(user_id, job_id, step_id))

    async def _open(self, output: Output) -> OutputBody:
        stream = await self.storage.open_stream(output.object_key)
        return OutputBody(stream=stream, content_type=output.content_type)

    async def output(self, user_id: str, job_id: str, step_id: str) -> Output:
        job = await self.get(user_id, job_id)
        for output in job.outputs:
            if output.step_id == step_id:
                return output
        raise NotFound(f"job {job_id} has no output for step {step_id!r}", code="output_not_found")

    async def webhook_deliveries(self, user_id: str, job_id: str) -> Sequence[WebhookDelivery]:
        """Every delivery attempt of the job's outcome event, in order (none before it has
        one)."""
        job = await self.get(user_id, job_id)
        if job.webhook is None:
            return []
        return await self.store.webhook_deliveries(job.webhook.event_id)

    # -- upload (the console's, from its own origin) ---------------------------------------

    async def upload_source(self, user_id: str, job_id: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the source of the caller's ``s3_presigned`` job that has not started; the bytes
        written. ``chunks`` enforces the size limit. The embedded storage writes the chunks as
        they come; S3 (whose protocol has no streamed put) gets them in one ``put``, at most
        ``max_source_bytes`` of them, because ``chunks`` refuses more."""
        job = await self.get(user_id, job_id)
        if job.source_type != "s3_presigned" or job.status is not JobStatus.CREATED:
            raise Conflict(
                f"job {job.id} is {job.status} and takes no upload", code="upload_not_allowed"
            )
        if isinstance(self.storage, SelfServedStorage):
            return await self.storage.put_stream(job.object_key, chunks)
        data = b"".join([chunk async for chunk in chunks])
        await self.storage.put(job.object_key, data, content_type="application/octet-stream")
        return len(data)

    # -- cancel ----------------------------------------------------------------------------

    async def cancel(self, user_id: str, job_id: str) -> Job:
        job = await self.get(user_id, job_id)
        # The status can move under us (queued → processing); follow it a few times.
        for _ in range(5):
            if job.status not in CANCELABLE:
                raise Conflict(
                    f"job {job.id} is {job.status} and cannot be canceled",
                    code="job_not_cancelable",
                )
            canceled = await self.store.transition(
                Transition(
                    job_id=job.id,
                    expected=frozenset({job.status}),
                    target=JobStatus.CANCELED,
                    at=self.clock(),
                )
            )
            if canceled is not None:
                return canceled
            job = await self.get(user_id, job_id)
        raise Conflict(f"job {job.id} changed while canceling; try again", code="job_busy")


def _request_hash(request: CreateJobRequest) -> str:
    return hashlib.sha256(msgspec.json.encode(request)).hexdigest()
