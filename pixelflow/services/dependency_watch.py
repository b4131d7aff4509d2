"""Watching the dependencies (database, queue, storage) of a long-running process: one log
line when one goes away and one when it is back, instead of a traceback per failed call, and a
gauge for alerts. The question itself ("is it ready?") is ``services.readiness.readiness``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from prometheus_client import Gauge

from pixelflow.core.wire import HealthStatus
from pixelflow.services.readiness import Ping, readiness

log = logging.getLogger(__name__)


class DependencyWatch:
    """Probes the dependencies every ``interval`` seconds; exports the answer as a gauge
    (1 up, 0 down) and logs each change once."""

    def __init__(
        self, checks: Mapping[str, Ping], *, gauge: Gauge | None = None, interval: float = 2.0
    ) -> None:
        self.checks = dict(checks)
        self.gauge = gauge
        self.interval = interval
        self._down: set[str] = set()

    async def probe_once(self) -> HealthStatus:
        status = await readiness(self.checks)
        for name, result in (status.checks or {}).items():
            up = result == "ok"
            if self.gauge is not None:
                self.gauge.labels(name).set(1 if up else 0)
            if not up and name not in self._down:
                self._down.add(name)
                log.warning("%s unavailable: retrying in the background until it is back", name)
            elif up and name in self._down:
                self._down.discard(name)
                log.info("%s reachable again", name)
        return status

    async def watch_forever(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self.interval)
