"""The job state machine, as data.

Every transition a store performs is checked against ``TRANSITIONS`` and executed as a
compare-and-set on the current status, so no status ever moves backwards.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class JobStatus(enum.StrEnum):
    CREATED = "created"
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


S = JobStatus

TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.CREATED: frozenset({S.QUEUED, S.CANCELED}),
    # queued → failed: no caller today (the reconciler fails only `processing` jobs whose
    # attempts are spent); allowed so a job that can never run may be failed without a claim.
    S.QUEUED: frozenset({S.PROCESSING, S.CANCELED, S.FAILED}),
    # processing → queued: a transient failure or a lost worker, retried later.
    # processing → canceled: the worker's final compare-and-set then fails and it drops its work.
    S.PROCESSING: frozenset({S.SUCCEEDED, S.FAILED, S.QUEUED, S.CANCELED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}

TERMINAL: frozenset[JobStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
CANCELABLE: frozenset[JobStatus] = frozenset(
    s for s, nxt in TRANSITIONS.items() if S.CANCELED in nxt
)


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]
