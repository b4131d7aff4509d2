"""Batcher: writes that arrive while one is in flight go out together (pure logic: the write
is a recording function; the stores' and the queue's own batches are in tests/contract)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from typing import Any

import pytest

from pixelflow.adapters.batching import Batcher
from pixelflow.core.errors import DatabaseUnavailable


class Recorder:
    """A write that records each batch and can be held, or fail for chosen items."""

    def __init__(self, *, fail_on: set[int] | None = None, unavailable: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_on = fail_on or set()
        self.unavailable = unavailable

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.unavailable:
            raise DatabaseUnavailable("down")
        if self.fail_on & set(items):
            raise ValueError(f"bad row among {list(items)}")
        return [item * 10 for item in items]


def batcher_for(write: Recorder, **options: Any) -> Batcher[int, int]:
    return Batcher(write, outage=DatabaseUnavailable, **options)


async def held_first_write(
    **options: Any,
) -> tuple[Recorder, Batcher[int, int], asyncio.Task[int]]:
    """A batcher whose first write (of item 0) is in flight, held at the gate."""
    write = Recorder()
    batcher = batcher_for(write, **options)
    write.gate.clear()
    first = asyncio.create_task(batcher.add(0))
    await asyncio.sleep(0)
    return write, batcher, first


async def test_a_lone_write_goes_at_once_and_alone() -> None:
    write = Recorder()
    assert await batcher_for(write).add(1) == 10
    assert write.batches == [[1]]


async def test_writes_arriving_during_one_in_flight_go_together() -> None:
    write, batcher, first = await held_first_write()
    rest = [asyncio.create_task(batcher.add(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    write.gate.set()
    assert await asyncio.gather(first, *rest) == [0, 10, 20, 30, 40, 50]
    assert write.batches == [[0], [1, 2, 3, 4, 5]]


async def test_items_with_one_key_never_share_a_batch() -> None:
    """A batch of compare-and-sets maps its answers back by key: two changes to one row go
    one after the other, as they would unbatched, and the order of arrival is kept."""
    write, batcher, first = await held_first_write(key=lambda item: item % 3)
    rest = [asyncio.create_task(batcher.add(i)) for i in (1, 4, 2, 7, 5)]
    await asyncio.sleep(0)
    write.gate.set()
    assert await asyncio.gather(first, *rest) == [0, 10, 40, 20, 70, 50]
    assert write.batches == [[0], [1, 2], [4, 5], [7]]


async def test_a_write_that_answers_for_too_few_items_fails_them() -> None:
    async def loses_one(items: Sequence[int]) -> list[int]:
        return list(items)[1:]

    batcher: Batcher[int, int] = Batcher(loses_one, outage=DatabaseUnavailable)
    results = await asyncio.gather(*(batcher.add(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)


async def test_a_batch_holds_at_most_max_batch_items() -> None:
    write = Recorder()
    batcher = batcher_for(write, max_batch=2)
    await asyncio.gather(*(batcher.add(i) for i in range(5)))
    assert write.batches == [[0, 1], [2, 3], [4]]


async def test_an_outage_fails_every_caller_in_the_batch_with_one_try() -> None:
    write = Recorder(unavailable=True)
    batcher = batcher_for(write)
    results = await asyncio.gather(*(batcher.add(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(result, DatabaseUnavailable) for result in results)
    assert write.batches == [[0, 1, 2]]


async def test_one_bad_row_fails_only_its_caller() -> None:
    write = Recorder(fail_on={1})
    batcher = batcher_for(write)
    results = await asyncio.gather(*(batcher.add(i) for i in range(3)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], ValueError)
    # The batch failed as a whole, then each row was written alone.
    assert write.batches == [[0, 1, 2], [0], [1], [2]]


async def test_a_cancelled_caller_leaves_the_others_written() -> None:
    write, batcher, first = await held_first_write()
    leaving = asyncio.create_task(batcher.add(1))
    staying = asyncio.create_task(batcher.add(2))
    await asyncio.sleep(0)
    leaving.cancel()
    write.gate.set()
    await asyncio.gather(first, staying)
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert write.batches == [[0], [1, 2]]


async def test_close_waits_for_the_writes_taken_on() -> None:
    write, batcher, adding = await held_first_write()
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    write.gate.set()
    await closing
    await adding
    assert write.batches == [[0]]


async def test_the_writes_run_outside_the_first_callers_context() -> None:
    """A batch serves many requests: the one that began it lends it no log context or trace."""
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    seen: list[str] = []

    async def write(items: Sequence[int]) -> list[None]:
        seen.append(request_id.get())
        return [None] * len(items)

    request_id.set("first caller")
    await Batcher(write, outage=DatabaseUnavailable).add(1)
    assert seen == ["none"]


async def test_an_outage_while_rows_are_retried_alone_fails_the_rest_at_once() -> None:
    class FailsThenGoesDown(Recorder):
        async def __call__(self, items: Sequence[int]) -> list[int]:
            self.batches.append(list(items))
            if len(items) > 1:
                raise ValueError("a bad row somewhere")
            if items[0] >= 1:
                raise DatabaseUnavailable("down")
            return [0]

    write = FailsThenGoesDown()
    batcher = batcher_for(write)
    results = await asyncio.gather(*(batcher.add(i) for i in range(4)), return_exceptions=True)
    # The batch fails on a bad row; alone, 0 is written and 1 meets the outage, and 2 and 3
    # are not tried again.
    assert results[0] == 0
    assert all(isinstance(result, DatabaseUnavailable) for result in results[1:])
    assert write.batches == [[0, 1, 2, 3], [0], [1]]
