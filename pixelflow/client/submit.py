"""``pixelflow submit FILE``: create a job, upload through the presigned URL, start, wait with a
progress display, and save the outputs."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from rich.console import Console
from rich.table import Table

from pixelflow.core.errors import InvalidInput
from pixelflow.core.models import Step
from pixelflow.core.states import TERMINAL, JobStatus
from pixelflow.core.validation import translate_validation_error
from pixelflow.core.wire import CreateJobResponse, JobView, UploadInfo

_POLL_INTERVAL = 0.25
# Exit status when --timeout runs out before the job finishes, as timeout(1) uses.
STILL_RUNNING_EXIT = 124


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the source image")
    parser.add_argument(
        "--step",
        action="append",
        default=[],
        metavar="JSON",
        help='a full pipeline step as JSON, e.g. \'{"id":"thumb","action":"resize","width":320}\' '
        "(repeatable; replaces the shortcut options)",
    )
    shortcuts = parser.add_argument_group("shortcuts (chained into one output, in this order)")
    shortcuts.add_argument("--resize", metavar="W[xH]", help="resize to fit inside WxH")
    shortcuts.add_argument("--crop", metavar="WxH", help="smart-crop to exactly WxH")
    shortcuts.add_argument("--watermark", metavar="TEXT", help="stamp TEXT in the corner")
    shortcuts.add_argument(
        "--format", choices=["jpeg", "jpg", "png", "webp", "avif", "gif", "tiff"]
    )
    shortcuts.add_argument("--quality", type=int, metavar="1-100")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the API's base URL")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("PIXELFLOW_API_KEY") or None,
        help="API key sent as a bearer token (api_key auth mode; default $PIXELFLOW_API_KEY)",
    )
    parser.add_argument("--user", help="user id sent in X-User-ID (header auth mode)")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to save the outputs")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300,
        help="seconds to wait for the job (default 300); past it, submit stops waiting, prints "
        f"the job's URL and exits with status {STILL_RUNNING_EXIT}: the job keeps running",
    )
    parser.set_defaults(run=run_submit)


def build_pipeline(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.step:
        steps = []
        for raw in args.step:
            try:
                steps.append(json.loads(raw))
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"--step is not valid JSON: {exc}") from None
        return steps

    chain: list[dict[str, Any]] = []
    if args.resize:
        width, height = _dimensions(args.resize, "--resize", allow_single=True)
        chain.append({"action": "resize", "width": width, **({"height": height} if height else {})})
    if args.crop:
        width, height = _dimensions(args.crop, "--crop", allow_single=False)
        chain.append({"action": "crop", "width": width, "height": height, "gravity": "smart"})
    if args.watermark:
        chain.append({"action": "watermark", "watermark": {"text": args.watermark}})
    if not chain:
        chain.append({"action": "convert"})
    for index, step in enumerate(chain):
        is_last = index == len(chain) - 1
        step["id"] = "output" if is_last else f"{step['action']}-{index}"
        if index > 0:
            step["input"] = chain[index - 1]["id"]
        if not is_last:
            step["emit"] = False
    last = chain[-1]
    if args.format:
        last["format"] = args.format
    if args.quality is not None:
        last["quality"] = args.quality
    # Check locally so a typo fails before anything is uploaded.
    try:
        msgspec.convert(chain, type=list[Step])
    except msgspec.ValidationError as exc:
        raise translate_validation_error(str(exc)) from None
    return chain


def _dimensions(raw: str, flag: str, *, allow_single: bool) -> tuple[int, int | None]:
    width, sep, height = raw.lower().partition("x")
    try:
        if not sep:
            if not allow_single:
                raise ValueError
            return int(width), None
        return int(width), int(height)
    except ValueError:
        form = "W or WxH" if allow_single else "WxH"
        raise InvalidInput(f"{flag} takes {form}, got {raw!r}") from None


def run_submit(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        return _submit(args, console)
    except InvalidInput as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        return 2
    except StillRunning as exc:
        # Giving up waiting is not canceling: the job may still succeed, so say where it is.
        job_url = f"{args.url.rstrip('/')}/v1/jobs/{exc.job.id}"
        console.print(
            f"[yellow]gave up waiting:[/yellow] job {exc.job.id} is still {exc.job.status} after "
            f"{args.timeout:g} s and keeps running on the server.\n"
            f"  follow it:  GET {job_url}\n"
            f"  cancel it:  POST {job_url}/cancel",
            highlight=False,
            soft_wrap=True,
        )
        return STILL_RUNNING_EXIT
    except ApiError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach {args.url}: {exc}")
        return 1


class ApiError(Exception):
    pass


class StillRunning(Exception):
    """The job was not finished when --timeout ran out."""

    def __init__(self, job: JobView) -> None:
        super().__init__(job.id)
        self.job = job


def _check(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in expected:
        try:
            body = response.json()
            detail = f"{body.get('error')} ({body.get('code')})"
        except ValueError:
            detail = response.text[:200]
        raise ApiError(
            f"{response.request.method} {response.request.url.path}: "
            f"HTTP {response.status_code}: {detail}"
        )
    return response


def _submit(args: argparse.Namespace, console: Console) -> int:
    source: Path = args.file
    if not source.is_file():
        raise InvalidInput(f"{source} is not a file")
    pipeline = build_pipeline(args)
    headers = {"X-User-ID": args.user} if args.user else {}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"

    with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
        created = msgspec.json.decode(
            _check(
                client.post("/v1/jobs", json={"source_type": "s3_presigned", "pipeline": pipeline}),
                202,
            ).content,
            type=CreateJobResponse,
        )
        console.print(f"job [bold]{created.job_id}[/bold] created; uploading {source.name}")
        _check(_upload(created.upload, source.read_bytes()), 200, 201, 204)
        _check(client.post(created.start_url), 202)
        job = _wait(client, created.job_url, console, timeout=args.timeout)
        if job.status is not JobStatus.SUCCEEDED:
            error = f"{job.error.message} ({job.error.code})" if job.error else job.status
            console.print(f"[red]job {job.status}[/red]: {error}")
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        table = Table("step", "format", "size", "bytes", "saved to")
        for output in job.outputs:
            response = _check(
                client.get(f"/v1/jobs/{job.id}/outputs/{output.step_id}", follow_redirects=True),
                200,
            )
            target = args.out / f"{source.stem}-{Path(output.object_key).name}"
            target.write_bytes(response.content)
            table.add_row(
                output.step_id,
                output.format,
                f"{output.width}x{output.height}",
                str(output.bytes),
                str(target),
            )
        Console().print(table)
    return 0


def _wait(client: httpx.Client, job_url: str, console: Console, *, timeout: float) -> JobView:
    deadline = time.monotonic() + timeout
    with console.status("queued") as status:
        while True:
            job = msgspec.json.decode(_check(client.get(job_url), 200).content, type=JobView)
            attempt = f" (attempt {job.attempts})" if job.attempts > 1 else ""
            status.update(f"{job.status}{attempt}")
            if job.status in TERMINAL:
                return job
            if time.monotonic() >= deadline:
                raise StillRunning(job)
            time.sleep(_POLL_INTERVAL)


def _upload(upload: UploadInfo, data: bytes) -> httpx.Response:
    """The bounded form upload when the API offers one (the storage refuses a file over the
    server's limit), else the original PixelFlow's presigned PUT."""
    if upload.presigned_post is not None:
        post = upload.presigned_post
        file = {"file": ("source", data)}
        return httpx.post(post.url, data=post.fields, files=file, timeout=300)
    return httpx.put(upload.presigned_put_url, content=data, timeout=300)
