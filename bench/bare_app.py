"""The API benchmark's baseline: a bare Starlette JSON endpoint on the same uvicorn settings as
``pixelflow api`` (pixelflow/cli.py), so the ratio is what PixelFlow's own work costs.

    python bench/bare_app.py --port 8123
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def create(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse(
        {"job_id": "bare", "status": "created", "steps": len(body)}, status_code=202
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    app = Starlette(routes=[Route("/v1/jobs", create, methods=["POST"])])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
