"""Benchmark: does checking an API key take longer when the key id exists than when it does not?

    .venv/bin/python bench/bench_auth.py [--rounds 2000] [--database-url postgresql://…]

Times ``KeyService.authenticate`` for a wrong secret on an existing key id and for an unknown
key id, interleaved so drift hits both alike, and prints their medians. Both paths hash the
presented key, make one lookup by id and one constant-time comparison (against a dummy hash
when no key has the id), so the medians should agree to within the noise. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pixelflow.adapters.store.base import SqlStore
from pixelflow.adapters.store.postgres import PostgresStore
from pixelflow.adapters.store.sqlite import SqliteStore
from pixelflow.core.identity import public_prefix
from pixelflow.services.keys import KeyService


async def measure(store: SqlStore, rounds: int) -> None:
    keys = KeyService(store=store)
    created = await keys.create("bench")
    secret = created.secret
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    unknown = public_prefix("zzzzzzzz") + secret.removeprefix(public_prefix(created.key.id))
    samples: dict[str, list[float]] = {"wrong secret": [], "unknown id": []}
    for _ in range(50):  # warm-up: connections, statement caches
        await keys.authenticate(wrong)
        await keys.authenticate(unknown)
    for _ in range(rounds):
        for label, presented in (("wrong secret", wrong), ("unknown id", unknown)):
            started = time.perf_counter_ns()
            assert await keys.authenticate(presented) is None
            samples[label].append((time.perf_counter_ns() - started) / 1000)
    for label, values in samples.items():
        quartiles = statistics.quantiles(values, n=4)
        print(
            f"{label:>13}: median {statistics.median(values):8.1f} µs"
            f"  (quartiles {quartiles[0]:.1f} .. {quartiles[2]:.1f})"
        )
    gap = statistics.median(samples["wrong secret"]) - statistics.median(samples["unknown id"])
    print(f"{'difference':>13}: {gap:+8.1f} µs")
    await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--database-url", help="a PostgreSQL DSN (default: a temporary SQLite)")
    args = parser.parse_args()
    if args.database_url:
        await measure(await PostgresStore.open(args.database_url), args.rounds)
        return
    with tempfile.TemporaryDirectory() as workdir:
        await measure(await SqliteStore.open(Path(workdir) / "bench.db"), args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
