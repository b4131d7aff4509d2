"""Redis for tests: the machine's real server, one DB number, and keys unique to this run.

Other runs may share the DB, so a run never flushes it: every key a run creates contains its
run id, and cleanup deletes exactly those (``SCAN`` by pattern).

arq does not prefix its keys by queue name (``arq:job:<id>``, ``arq:in-progress:<id>``, …), so
tests must use job ids from ``RedisRun.job_id()``, which carry the run id too.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from redis.asyncio import Redis

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/11"


def redis_test_url() -> str:
    return os.environ.get("PIXELFLOW_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)


def closed_port_url() -> str:
    """A Redis URL on a loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@dataclass(frozen=True)
class RedisRun:
    url: str = field(default_factory=redis_test_url)
    run_id: str = field(default_factory=lambda: f"pftest-{uuid.uuid4().hex[:12]}")

    @property
    def queue_name(self) -> str:
        return f"{self.run_id}:queue"

    @property
    def key_prefix(self) -> str:
        return f"{self.run_id}:"

    def job_id(self) -> str:
        return f"{self.run_id}-{uuid.uuid4().hex[:10]}"

    def client(self) -> Redis:
        client: Redis = Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
        return client

    async def check(self) -> None:
        """Fail loudly (never skip) when the test Redis is missing."""
        async with self.client() as redis:
            try:
                await redis.ping()
            except Exception as exc:
                raise RuntimeError(f"test Redis not reachable at {self.url}: {exc}") from exc

    async def cleanup(self) -> int:
        """Delete this run's keys, and only them; return how many there were."""
        deleted = 0
        async with self.client() as redis:
            async for key in redis.scan_iter(match=f"*{self.run_id}*", count=500):
                deleted += await redis.delete(key)
        return deleted
