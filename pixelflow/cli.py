"""The ``pixelflow`` command: serve, api, worker, migrate, submit, keys, usage, auth-mode."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pixelflow.config import ConfigError, Role, Settings, load_settings, prepare_data_dir
from pixelflow.core.errors import PixelflowError
from pixelflow.telemetry.endpoint import ListenError
from pixelflow.telemetry.logging import configure_logging

if TYPE_CHECKING:
    from pixelflow.api.app import StartupHook
    from pixelflow.runtime import AppContext

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except ConfigError as exc:
        print(f"pixelflow: configuration error: {exc}", file=sys.stderr)
        return 2
    except PixelflowError as exc:
        print(f"pixelflow: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    except ListenError as exc:
        print(f"pixelflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelflow", description="Asynchronous image-processing job service."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="API with an in-process worker on the embedded defaults (no services)"
    )
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--data-dir", help="where the embedded defaults keep their files")
    serve.set_defaults(run=_run_serve)

    api = commands.add_parser("api", help="the HTTP API only (control plane)")
    api.set_defaults(run=_run_api)

    worker = commands.add_parser("worker", help="the arq worker only (data plane)")
    worker.set_defaults(run=_run_worker)

    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    migrate.set_defaults(run=_run_migrate)

    from pixelflow.admin import add_admin_commands
    from pixelflow.client.submit import add_submit_arguments

    submit = commands.add_parser(
        "submit", help="upload an image, run a pipeline on it and save the outputs"
    )
    add_submit_arguments(submit)
    add_admin_commands(commands)
    return parser


def _serve_overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides: dict[str, str] = {}
    if args.host is not None or args.port is not None:
        overrides["PIXELFLOW_API_ADDR"] = f"{args.host or '127.0.0.1'}:{args.port or 8080}"
    if args.data_dir is not None:
        overrides["PIXELFLOW_DATA_DIR"] = args.data_dir
    return overrides


def _run_serve(args: argparse.Namespace) -> int:
    settings = load_settings(Role.SERVE, overrides=_serve_overrides(args))
    prepare_data_dir(settings)
    return _run_http(settings, on_startup=start_embedded)


async def start_embedded(ctx: AppContext, stack: contextlib.AsyncExitStack) -> None:
    """``serve``'s startup: the in-process worker and webhook delivery, composed here so the
    API never imports them."""
    from pixelflow.runtime import run_webhook_delivery
    from pixelflow.worker.local import start_embedded_worker

    await start_embedded_worker(ctx, stack)
    await stack.enter_async_context(run_webhook_delivery(ctx))
    log.info(
        "embedded mode: data in %s; local_file sources under %s; docs at %s/docs",
        ctx.settings.data_dir,
        ctx.settings.local_source_root,
        ctx.settings.public_url,
    )


def _run_api(args: argparse.Namespace) -> int:
    return _run_http(load_settings(Role.API), on_startup=None)


def _run_http(settings: Settings, *, on_startup: StartupHook | None) -> int:
    import uvicorn

    from pixelflow.api.app import create_app
    from pixelflow.telemetry.endpoint import metrics_endpoint
    from pixelflow.telemetry.metrics import Metrics

    configure_logging(settings.log_level, settings.log_format)
    if settings.role is not Role.SERVE:
        # Wait out a dependency that is down before uvicorn takes the signals over: until
        # then SIGTERM/SIGINT end the process at once, as they should while nothing is served.
        asyncio.run(_wait_for_dependencies(settings))
    metrics = Metrics(role=settings.role.value)
    app = create_app(settings, on_startup=_settling(on_startup), metrics=metrics)
    config = uvicorn.Config(
        app,
        host=settings.api_addr.host,
        port=settings.api_addr.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        async with contextlib.AsyncExitStack() as stack:
            # The metrics port first: if it is taken, nothing else has started.
            if settings.api_metrics_addr is not None:
                await stack.enter_async_context(
                    metrics_endpoint(
                        metrics, settings.api_metrics_addr, variable="PIXELFLOW_API_METRICS_ADDR"
                    )
                )
            await server.serve()

    # uvicorn raises SystemExit when startup fails, after logging why.
    with contextlib.suppress(SystemExit):
        asyncio.run(serve())
    # A dependency unreachable at startup (e.g. the database) means the server never started.
    return 0 if server.started else 1


async def _wait_for_dependencies(settings: Settings) -> None:
    from pixelflow.runtime import open_context_when_reachable
    from pixelflow.telemetry.metrics import Metrics

    async with open_context_when_reachable(settings, Metrics()):
        pass


def _settling(on_startup: StartupHook | None) -> StartupHook:
    """``on_startup``, then the collector set-up for a long-running process (gc_tuning.py)."""
    from pixelflow.gc_tuning import settle_after_startup

    async def startup(ctx: AppContext, stack: contextlib.AsyncExitStack) -> None:
        if on_startup is not None:
            await on_startup(ctx, stack)
        settle_after_startup()

    return startup


def _run_worker(args: argparse.Namespace) -> int:
    from pixelflow.worker.arq_worker import run_worker

    settings = load_settings(Role.WORKER)
    configure_logging(settings.log_level, settings.log_format)
    return run_worker(settings)


def _run_migrate(args: argparse.Namespace) -> int:
    from pixelflow.runtime import migrate_database

    settings = load_settings(Role.MIGRATE)
    configure_logging(settings.log_level, settings.log_format)
    applied = asyncio.run(migrate_database(settings))
    print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
