"""An arq ``Worker`` that claims the jobs a poll found in one script call.

arq's ``start_jobs`` claims each job in a WATCH/EXISTS/ZSCORE/MULTI/PSETEX/EXEC transaction:
four round trips per job. Each round trip is a socket write and a wake-up of Redis, and the
worker's event loop shares its cores with libvips. ``ClaimingWorker`` makes the same check and
write (not running anywhere, still queued, due; then the in-progress key with arq's expiry) for
every job of a poll in one atomic script, then runs the claimed jobs as arq does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker

# KEYS: the queue, then each candidate's in-progress key. ARGV: now (ms), the in-progress
# expiry (ms), how many jobs to claim at most, then the candidates' ids, in the queue's order.
# Answers the claimed jobs as a flat list: id, score, id, score, ...
_CLAIM_SCRIPT = """
local claimed = {}
local now, expiry, wanted = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
for i = 2, #KEYS do
  if #claimed >= 2 * wanted then break end
  local id = ARGV[2 + i]
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      redis.call('PSETEX', KEYS[i], expiry, '1')
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = score
    end
  end
end
return claimed
"""


class ClaimingWorker(Worker):
    """``arq.worker.Worker`` with ``start_jobs`` done in one round trip."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._claim = self.pool.register_script(_CLAIM_SCRIPT)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        candidates = [job_id.decode() for job_id in job_ids]
        claimed: list[bytes] = await self._claim(
            keys=[self.queue_name, *(in_progress_key_prefix + job_id for job_id in candidates)],
            args=[timestamp_ms(), int(self.in_progress_timeout_s * 1000), free, *candidates],
        )
        for index in range(0, len(claimed), 2):
            job_id, score = claimed[index].decode(), int(float(claimed[index + 1]))
            # Never waits: the semaphore has a place for every job below max_jobs.
            await self.sem.acquire()
            self.job_counter += 1
            task = asyncio.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task
