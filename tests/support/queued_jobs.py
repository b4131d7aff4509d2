"""A job put straight into ``queued`` through the real store and storage, as ``start`` leaves it:
for tests of what happens after the API (processing attempts, the reconciler, races)."""

from __future__ import annotations

from typing import Any

import msgspec

from pixelflow.adapters.storage.protocol import ObjectStorage
from pixelflow.adapters.store.protocol import Store
from pixelflow.core.clock import new_job_id, utc_now
from pixelflow.core.formats import upload_key
from pixelflow.core.models import Job, Step, Transition
from pixelflow.core.states import JobStatus


async def queued_upload(
    store: Store, storage: ObjectStorage, pipeline: list[dict[str, Any]], data: bytes | None
) -> Job:
    """An ``s3_presigned`` job of user ``u`` whose source is ``data`` (None: never uploaded),
    moved ``created → queued`` with the upload's version pinned, as ``start`` does."""
    job_id, now = new_job_id(), utc_now()
    job = Job(
        id=job_id,
        user_id="u",
        status=JobStatus.CREATED,
        source_type="s3_presigned",
        object_key=upload_key(job_id),
        webhook_url=None,
        pipeline=msgspec.convert(pipeline, type=list[Step]),
        created_at=now,
        updated_at=now,
    )
    await store.create_job(job)
    if data is not None:
        await storage.put(job.object_key, data, content_type="image/jpeg")
    info = await storage.stat(job.object_key)
    queued = await store.transition(
        Transition(
            job_id=job_id,
            expected=frozenset({JobStatus.CREATED}),
            target=JobStatus.QUEUED,
            at=now,
            source_etag=info.etag if info is not None else None,
        )
    )
    assert queued is not None
    return queued
