"""Writes that arrive while one is in flight go to the database together.

Under load, each new job's ``INSERT`` was a round trip, a commit and, in PostgreSQL, a WAL flush
of its own: about half of what a create cost the API (docs/benchmarks.md). ``Batcher`` writes
the first item at once and collects the ones that arrive meanwhile into the next write, so a
quiet service pays no delay and a busy one writes many rows per round trip and commit.

A batch is written all or nothing. When it fails because the database is unavailable, every
caller in it gets that error (trying each row alone would only wait out the outage again and
again). When it fails for any other reason, one bad row must not fail the others: each row is
then written alone, and only the one that fails again raises.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from pixelflow.core.errors import DatabaseUnavailable

T = TypeVar("T")

# Rows per write at most: a batch stays one modest statement pipeline, and one slow batch
# holds back at most this many callers.
MAX_BATCH = 64


class Batcher(Generic[T]):
    def __init__(
        self, write: Callable[[Sequence[T]], Awaitable[None]], *, max_batch: int = MAX_BATCH
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        """Return once ``item`` is written, or raise what writing it raised. If the caller is
        cancelled meanwhile, the item may still be written (as a single write could be)."""
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, written))
        if self._writer is None:
            # A context of its own: the writes serve many requests, not the one that began them
            # (whose log context and trace would otherwise ride along).
            self._writer = asyncio.create_task(self._write_all(), context=contextvars.Context())
        await written

    async def close(self) -> None:
        """Wait for the writes already taken on."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_all(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._write_batch(batch)
                batch = []
        finally:
            self._writer = None
            # Left unsettled only when this task itself was cancelled (the loop is closing).
            for _, written in [*batch, *self._waiting]:
                _settle(written, DatabaseUnavailable("the write was abandoned"))
            self._waiting.clear()

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._write([item for item, _ in batch])
        except DatabaseUnavailable as exc:
            for _, written in batch:
                _settle(written, exc)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for index, (item, written) in enumerate(batch):
                try:
                    await self._write([item])
                except DatabaseUnavailable as outage:
                    for _, left in batch[index:]:  # the rest would only wait it out in turn
                        _settle(left, outage)
                    return
                except Exception as alone:
                    _settle(written, alone)
                else:
                    _settle(written, None)
        else:
            for _, written in batch:
                _settle(written, None)


def _settle(written: asyncio.Future[None], error: BaseException | None) -> None:
    if written.done():  # its caller was cancelled
        return
    if error is None:
        written.set_result(None)
    else:
        written.set_exception(error)
