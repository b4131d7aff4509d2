"""A TCP proxy a test can cut and restore: a dependency outage without touching the (shared)
server behind it. Cutting closes the listening socket and every proxied connection, so clients
see what they would see if the server went down: refused connections and broken sockets.

It runs its own event loop in a thread, so synchronous tests and other loops can use it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

from tests.support.processes import free_port


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._to_drop = 0
        self._rewrite: tuple[bytes, bytes] | None = None
        self.accepted = 0  # connections accepted so far, dropped ones included

    def start(self) -> None:
        self._thread.start()
        self.restore()

    def restore(self) -> None:
        """Listen again (same port): new connections reach the target."""
        self._call(self._listen())

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        self._call(self._close())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def drop_connections(self, count: int) -> None:
        """Accept the next ``count`` connections and close each at once: a server that hangs
        up before answering."""
        self._to_drop = count

    def rewrite_upstream(self, old: bytes, new: bytes) -> None:
        """Replace ``old`` with ``new`` in what clients send on connections opened from now on:
        bytes changed in transit. (Matched within each read, so keep ``old`` short.)"""
        self._rewrite = (old, new)

    @property
    def is_cut(self) -> bool:
        return self._server is None

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._to_drop > 0:
            self._to_drop -= 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                _pipe(reader, up_writer, self._rewrite), _pipe(up_reader, writer, None)
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rewrite: tuple[bytes, bytes] | None
) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data.replace(*rewrite) if rewrite else data)
            await writer.drain()
    writer.transport.abort()


@contextlib.contextmanager
def tcp_proxy(target_host: str, target_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target_host, target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
