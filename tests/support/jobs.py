"""Helpers shared by API and end-to-end tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pyvips

TERMINAL = {"succeeded", "failed", "canceled"}


def job_body(*steps: dict[str, Any], source: str = "s3_presigned", key: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"source_type": source, "pipeline": list(steps)}
    if key:
        body["object_key"] = key
    return body


async def wait_for(
    client: httpx.AsyncClient, job_id: str, statuses: set[str] = TERMINAL, within: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {within}s"
        await asyncio.sleep(0.1)


def decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def loader_format(image: pyvips.Image) -> str:
    """'jpeg', 'png', 'webp', 'heif', ... from the loader libvips picked."""
    loader = str(image.get("vips-loader"))
    return loader.removesuffix("load_buffer").removesuffix("load_source").removesuffix("load")


# The acceptance job on photo-12mp.jpg (4000x3000): a resize, a full-size watermark, a smart
# crop and a resize chained on the first one, each with its expected output.
DONE_WHEN_PIPELINE: list[dict[str, Any]] = [
    {"id": "large", "action": "resize", "width": 800, "format": "jpeg"},
    {"id": "marked", "action": "watermark", "watermark": {"text": "© PixelFlow"}},
    {
        "id": "square",
        "action": "crop",
        "width": 400,
        "height": 400,
        "gravity": "smart",
        "format": "webp",
    },
    {"id": "small", "action": "resize", "width": 320, "input": "large", "format": "avif"},
]
# step id → (width, height, format, libvips loader of the encoded output, content type)
DONE_WHEN_OUTPUTS: dict[str, tuple[int, int, str, str, str]] = {
    "large": (800, 600, "jpeg", "jpeg", "image/jpeg"),
    "marked": (4000, 3000, "jpeg", "jpeg", "image/jpeg"),
    "square": (400, 400, "webp", "webp", "image/webp"),
    "small": (320, 240, "avif", "heif", "image/avif"),
}
