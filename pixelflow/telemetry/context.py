"""What a log line is about: job, attempt, trace and user, carried in context variables.

The worker binds them per attempt and the API per request; every record logged meanwhile, by
any module, carries them (see ``ContextFilter``), so no call site has to repeat them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Mapping
from types import MappingProxyType

FIELDS = ("job_id", "attempt", "trace_id", "user_id")

_EMPTY: Mapping[str, object] = MappingProxyType({})
# Each change sets a new mapping: a context never sees another's fields.
_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "pixelflow_log_context", default=_EMPTY
)


def bind(**fields: object) -> None:
    """Add fields to the current context (until it ends; a task's changes stay in the task)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


@contextlib.contextmanager
def bound(**fields: object) -> Iterator[None]:
    """``bind`` for the duration of a block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, object]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (a field passed in ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True
