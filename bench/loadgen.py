"""The API benchmark's load: ``--concurrency`` keep-alive connections from this process for
``--seconds``, each sending its next request as soon as the last one is answered.

    python bench/loadgen.py --url http://127.0.0.1:8080 --mode create|create_start \
        --concurrency 32 --seconds 5 --object-key photo-12mp.jpg

Prints one JSON object: operations done (create+start counts as one), elapsed seconds, each
operation's latency, and the number of unexpected answers (any makes the benchmark fail).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

PIPELINE = [{"id": "small", "action": "resize", "width": 800, "format": "jpeg"}]


async def run(options: argparse.Namespace) -> dict[str, object]:
    body = json.dumps(
        {"source_type": "local_file", "object_key": options.object_key, "pipeline": PIPELINE}
    ).encode()
    headers = {"Content-Type": "application/json", "X-User-ID": options.user}
    latencies: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=options.concurrency, force_close=False)
    async with aiohttp.ClientSession(options.url, connector=connector, headers=headers) as session:

        async def post(path: str, data: bytes | None) -> dict[str, object]:
            async with session.post(path, data=data) as response:
                payload = await response.read()
                if response.status != 202:
                    errors.append(f"{path}: {response.status} {payload[:200]!r}")
                    return {}
                answer: dict[str, object] = json.loads(payload)
                return answer

        async def client(deadline: float) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                created = await post("/v1/jobs", body)
                if options.mode == "create_start" and created:
                    await post(f"/v1/jobs/{created['job_id']}/start", None)
                latencies.append(time.perf_counter() - started)

        await post("/v1/jobs", body)  # opens a connection, warms the first request up
        started = time.perf_counter()
        deadline = started + options.seconds
        await asyncio.gather(*(client(deadline) for _ in range(options.concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "operations": len(latencies),
        "elapsed": elapsed,
        "latencies": latencies,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("create", "create_start"), default="create")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--object-key", default="photo-12mp.jpg")
    parser.add_argument("--user", default="bench")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
