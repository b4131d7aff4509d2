"""The system resolver (``getaddrinfo``) on a small thread pool of its own.

``getaddrinfo`` blocks, and a name served by a slow or dead DNS server blocks for many seconds.
On the loop's default executor, a few such names would stall every other blocking call that
shares it (SQLite, local files); here they can only fill this pool, and each wait is bounded.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

DEFAULT_WORKERS = 4
DEFAULT_TIMEOUT = 5.0


Lookup = Callable[..., list[tuple[Any, ...]]]


class ThreadedResolver:
    def __init__(
        self,
        *,
        workers: int = DEFAULT_WORKERS,
        timeout: float = DEFAULT_TIMEOUT,
        lookup: Lookup = socket.getaddrinfo,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixelflow-dns")
        self._timeout = timeout
        self._lookup = lookup
        self._closed = False

    async def resolve(self, host: str, port: int) -> list[str]:
        if self._closed:
            raise RuntimeError("the resolver is closed")
        loop = asyncio.get_running_loop()
        lookup = loop.run_in_executor(self._pool, self._lookup, host, port, 0, socket.SOCK_STREAM)
        try:
            infos = await asyncio.wait_for(lookup, timeout=self._timeout)
        except (OSError, TimeoutError, UnicodeError):
            return []
        return sorted({str(info[4][0]) for info in infos})

    async def aclose(self) -> None:
        self._closed = True
        # Lookups still running finish on their own; nothing waits for them.
        self._pool.shutdown(wait=False, cancel_futures=True)
