"""Writes that arrive while one is in flight go out together.

Under load, a write per request means a round trip (and, for a database, a commit) per request:
about half of what a create or a start cost the API (docs/benchmarks.md). ``Batcher`` writes
the first item at once and collects the ones that arrive meanwhile into the next write, so a
quiet service pays no delay and a busy one writes many items per round trip.

A batch is written all or nothing. When it fails because the backend is unavailable (the
``outage`` error), every caller in it gets that error: trying each item alone would only wait
out the outage again and again. When it fails for any other reason, one bad item must not fail
the others: each item is then written alone, and only the one that fails again raises.

Items with the same ``key`` never share a batch: the later one waits for the next. A batch of
compare-and-sets can then map its answers back by key, and two requests racing for one row
still meet one after the other, as they would without batching.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Items per write at most: a batch stays one modest statement or script, and one slow batch
# holds back at most this many callers.
MAX_BATCH = 64


class Batcher(Generic[T, R]):
    """Calls ``write`` with batches of the items given to ``add``; ``write`` answers with one
    result per item, in the items' order, and each ``add`` returns its item's result."""

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        outage: type[Exception],
        key: Callable[[T], Hashable] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._write = write
        self._outage = outage
        self._key = key
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, item: T) -> R:
        """Return ``item``'s result once it is written, or raise what writing it raised. If the
        caller is cancelled meanwhile, the item may still be written (as a single write could
        be)."""
        written: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, written))
        if self._writer is None:
            # A context of its own: the writes serve many requests, not the one that began them
            # (whose log context and trace would otherwise ride along).
            self._writer = asyncio.create_task(self._write_all(), context=contextvars.Context())
        return await written

    async def close(self) -> None:
        """Wait for the writes already taken on."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_all(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                batch = self._next_batch()
                await self._write_batch(batch)
                batch = []
        finally:
            self._writer = None
            # Left unsettled only when this task itself was cancelled (the loop is closing).
            for _, written in [*batch, *self._waiting]:
                _fail(written, self._outage("the write was abandoned"))
            self._waiting.clear()

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The oldest waiting items, at most ``max_batch``, no two with the same key."""
        if self._key is None:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            return batch
        batch, later, keys = [], [], set()
        for entry in self._waiting:
            key = self._key(entry[0])
            if len(batch) < self._max_batch and key not in keys:
                keys.add(key)
                batch.append(entry)
            else:
                later.append(entry)
        self._waiting = later
        return batch

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._write_checked([item for item, _ in batch])
        except self._outage as exc:
            for _, written in batch:
                _fail(written, exc)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            for index, (item, written) in enumerate(batch):
                try:
                    [result] = await self._write_checked([item])
                except self._outage as outage:
                    for _, left in batch[index:]:  # the rest would only wait it out in turn
                        _fail(left, outage)
                    return
                except Exception as alone:
                    _fail(written, alone)
                else:
                    _succeed(written, result)
        else:
            for (_, written), result in zip(batch, results, strict=True):
                _succeed(written, result)

    async def _write_checked(self, items: list[T]) -> Sequence[R]:
        results = await self._write(items)
        if len(results) != len(items):
            raise RuntimeError(f"a batch of {len(items)} items came back with {len(results)}")
        return results


def _succeed(written: asyncio.Future[R], result: R) -> None:
    if not written.done():  # else its caller was cancelled
        written.set_result(result)


def _fail(written: asyncio.Future[R], error: BaseException) -> None:
    if not written.done():
        written.set_exception(error)
