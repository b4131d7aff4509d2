"""The API benchmark's load: ``--concurrency`` keep-alive connections from this process for
``--seconds``, each sending its next request as soon as the last one is answered.

    python bench/loadgen.py --url http://127.0.0.1:8080 --mode create|create_start \
        --concurrency 32 --seconds 5 --object-key photo-12mp.jpg

Prints one JSON object: operations done (create+start counts as one), elapsed seconds, each
operation's latency, and the number of unexpected answers (any makes the benchmark fail).

The client speaks HTTP/1.1 itself on asyncio streams, with the requests encoded once, rather
than through an HTTP client library: it shares the two cores with the server it measures, and
aiohttp's client spent about 0.4 ms of CPU per request there (half a core at the rates seen),
time taken from the server and from the database whenever all three wanted a core at once.
It handles exactly what the servers measured answer: a status line, headers and a body of
``Content-Length`` bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

PIPELINE = [{"id": "small", "action": "resize", "width": 800, "format": "jpeg"}]


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send ``raw`` (a whole request) and return the answer's status and body."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding":
                raise RuntimeError("a chunked answer: this client reads Content-Length bodies only")
        if length is None:
            raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def encode_request(host: str, path: str, user: str, body: bytes | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"X-User-ID: {user}"]
    if body is not None:
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def run(options: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(options.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    body = json.dumps(
        {"source_type": "local_file", "object_key": options.object_key, "pipeline": PIPELINE}
    ).encode()
    create = encode_request(url.netloc, "/v1/jobs", options.user, body)
    latencies: list[float] = []
    errors: list[str] = []

    async def post(connection: Connection, raw: bytes) -> bytes | None:
        status, payload = await connection.request(raw)
        if status != 202:
            errors.append(f"{raw.split(b' ', 2)[1].decode()}: {status} {payload[:200]!r}")
            return None
        return payload

    async def client(connection: Connection, deadline: float) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            created = await post(connection, create)
            if options.mode == "create_start" and created is not None:
                job_id = json.loads(created)["job_id"]
                start = encode_request(url.netloc, f"/v1/jobs/{job_id}/start", options.user, None)
                await post(connection, start)
            latencies.append(time.perf_counter() - started)

    connections = [await Connection.open(host, port) for _ in range(options.concurrency)]
    try:
        await post(connections[0], create)  # warms the first request up
        started = time.perf_counter()
        deadline = started + options.seconds
        await asyncio.gather(*(client(connection, deadline) for connection in connections))
        elapsed = time.perf_counter() - started
    finally:
        for connection in connections:
            connection.close()
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
