"""The PostgreSQL store's connection pool: asyncpg connections handed out and taken back.

asyncpg's own pool costs about 65 µs of CPU per acquire and release (a task for the timed
acquire, another for the shielded release, a reset coroutine and an inactivity timer), twice
what a short query costs, on every store call. The store needs much less of it: connections
opened on demand up to a ceiling, reused most recent first, and dropped when they cannot be
trusted any more. Taking an idle connection and giving it back is a list pop and append.

A connection is dropped (terminated, and a new one opened when next needed) when it is closed,
when it was handed back still inside a transaction, or when the code using it stopped with
anything but an answer from the server (a cancellation, a lost connection, a bug): its
protocol state is then unknown. An error PostgreSQL reported (a constraint, a serialization
failure) leaves it usable, as asyncpg's transaction block has rolled back by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

Connect = Callable[[], Awaitable[Any]]


class ConnectionPool:
    def __init__(self, connect: Connect, *, max_size: int, acquire_timeout: float) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._connect = connect
        self._acquire_timeout = acquire_timeout
        self._slots = asyncio.Semaphore(max_size)  # connections lent out or being opened
        self._idle: list[Any] = []
        self._closed = False

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        """A connection for the block, waited for (and opened if need be) within the acquire
        timeout; ``TimeoutError`` past it."""
        if self._closed:
            raise asyncpg.InterfaceError("the connection pool is closed")
        async with asyncio.timeout(self._acquire_timeout):
            await self._slots.acquire()
            try:
                conn = await self._take()
            except BaseException:
                self._slots.release()
                raise
        reusable = False
        try:
            yield conn
            reusable = True
        except asyncpg.PostgresError:
            reusable = True  # the server answered: the connection itself is fine
            raise
        finally:
            self._give_back(conn, reusable)
            self._slots.release()

    async def close(self) -> None:
        """Close the idle connections; one still lent out is closed when it comes back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await conn.close(timeout=5)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    async def _take(self) -> Any:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
        return await self._connect()

    def _give_back(self, conn: Any, reusable: bool) -> None:
        if reusable and not self._closed and not conn.is_closed() and not conn.is_in_transaction():
            self._idle.append(conn)
        elif not conn.is_closed():
            conn.terminate()
