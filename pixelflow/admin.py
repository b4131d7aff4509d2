"""Operator commands on the configured database: ``pixelflow keys …``, ``pixelflow usage`` and
``pixelflow auth-mode``.

They read ``PIXELFLOW_DATABASE_URL`` (PostgreSQL in production) and otherwise the SQLite file
of a ``serve`` data directory (``PIXELFLOW_DATA_DIR`` or ``--data-dir``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, get_args

import msgspec
from rich import box
from rich.console import Console
from rich.table import Table

from pixelflow.config import AuthMode, Role, load_settings
from pixelflow.core.identity import public_prefix
from pixelflow.core.models import ApiKey, UsageTotals
from pixelflow.core.usage import parse_instant
from pixelflow.core.wire import UsageReport
from pixelflow.runtime import AdminContext, open_admin_context
from pixelflow.telemetry.logging import configure_logging

T = TypeVar("T")


def add_admin_commands(commands: Any) -> None:
    """Add ``keys``, ``usage`` and ``auth-mode`` to the ``pixelflow`` sub-command parser."""
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(required=True, metavar="ACTION")

    create = actions.add_parser("create", help="make a key for a user and print it (once)")
    create.add_argument("--user", required=True, help="the user id the key acts as")
    create.add_argument("--name", default="", help="what the key is for (shown by list)")
    _database_option(create)
    create.set_defaults(run=_run_keys_create)

    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--user", help="only this user's keys")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead")
    _database_option(listing)
    listing.set_defaults(run=_run_keys_list)

    revoke = actions.add_parser("revoke", help="revoke a key at once, on every API process")
    revoke.add_argument("key", help="the key's id or its prefix pf_<id> (see `keys list`)")
    _database_option(revoke)
    revoke.set_defaults(run=_run_keys_revoke)

    usage = commands.add_parser("usage", help="a user's usage totals (as GET /v1/usage)")
    usage.add_argument("--user", required=True, help="the user id")
    usage.add_argument(
        "--from", dest="start", metavar="TIME", help="RFC 3339 time or date (default: month start)"
    )
    usage.add_argument("--to", dest="end", metavar="TIME", help="RFC 3339 time or date, exclusive")
    usage.add_argument("--group", choices=["day"], help="add one row per UTC day")
    usage.add_argument("--json", action="store_true", help="print the API's JSON instead")
    _database_option(usage)
    usage.set_defaults(run=_run_usage)

    auth_mode = commands.add_parser(
        "auth-mode",
        help="show or change the PIXELFLOW_AUTH every api and worker of the deployment must use",
    )
    auth_mode.add_argument(
        "mode", nargs="?", choices=get_args(AuthMode), help="the mode to switch to"
    )
    _database_option(auth_mode)
    auth_mode.set_defaults(run=_run_auth_mode)


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help="a `serve` data directory (when PIXELFLOW_DATABASE_URL is unset)"
    )


def _run(args: argparse.Namespace, action: Callable[[AdminContext], Awaitable[T]]) -> T:
    overrides = {"PIXELFLOW_DATA_DIR": args.data_dir} if args.data_dir else {}
    settings = load_settings(Role.ADMIN, overrides=overrides)
    configure_logging(settings.log_level, settings.log_format)

    async def main() -> T:
        async with open_admin_context(settings) as ctx:
            return await action(ctx)

    return asyncio.run(main())


def _run_keys_create(args: argparse.Namespace) -> int:
    created = _run(args, lambda ctx: ctx.keys.create(args.user, name=args.name))
    key = created.key
    print(
        f"created {public_prefix(key.id)} for user {key.user_id}; this is the only time the "
        "key is shown, store it now:",
        file=sys.stderr,
    )
    print(created.secret)  # alone on stdout, for KEY=$(pixelflow keys create …)
    return 0


def _run_keys_list(args: argparse.Namespace) -> int:
    keys = _run(args, lambda ctx: ctx.keys.list(user_id=args.user))
    if args.json:
        for key in keys:
            print(msgspec.json.encode(_key_row(key)).decode())
        return 0
    table = Table("prefix", "user", "name", "created", "last used", "revoked", box=box.SIMPLE)
    for key in keys:
        row = _key_row(key)
        table.add_row(*(str(value or "-") for value in row.values()))
    _console().print(table)
    return 0


def _key_row(key: ApiKey) -> dict[str, str | None]:
    return {
        "prefix": public_prefix(key.id),
        "user_id": key.user_id,
        "name": key.name,
        "created_at": _time(key.created_at),
        "last_used_at": _time(key.last_used_at),
        "revoked_at": _time(key.revoked_at),
    }


def _run_keys_revoke(args: argparse.Namespace) -> int:
    key = _run(args, lambda ctx: ctx.keys.revoke(args.key))
    print(f"revoked {public_prefix(key.id)} (user {key.user_id}) at {_time(key.revoked_at)}")
    return 0


def _run_usage(args: argparse.Namespace) -> int:
    start = parse_instant("--from", args.start) if args.start else None
    end = parse_instant("--to", args.end) if args.end else None
    report = _run(
        args,
        lambda ctx: ctx.usage.report(args.user, start=start, end=end, by_day=bool(args.group)),
    )
    if args.json:
        print(msgspec.json.encode(report).decode())
        return 0
    _console().print(usage_table(report))
    return 0


def _run_auth_mode(args: argparse.Namespace) -> int:
    if args.mode is None:
        recorded = _run(args, lambda ctx: ctx.deployment.auth_mode())
        if recorded is None:
            print(
                "no mode recorded yet: the first `pixelflow api` or `pixelflow worker` to start "
                "records its PIXELFLOW_AUTH",
                file=sys.stderr,
            )
        else:
            print(recorded)
        return 0
    _run(args, lambda ctx: ctx.deployment.set_auth_mode(args.mode))
    print(
        f"this deployment's mode is now PIXELFLOW_AUTH={args.mode}: api and worker processes "
        "with another mode refuse to start, and those running keep theirs until restarted; "
        f"restart every one with PIXELFLOW_AUTH={args.mode}",
        file=sys.stderr,
    )
    return 0


def usage_table(report: UsageReport) -> Table:
    table = Table(
        "period",
        "jobs",
        "pixels",
        "bytes in",
        "bytes out",
        "bytes saved",
        "compute ms",
        box=box.SIMPLE,
        title=f"usage of {report.user_id}, {_time(report.start)} to {_time(report.end)}",
    )
    for column in table.columns[1:]:
        column.justify = "right"
    for day in report.days or []:
        table.add_row(day.date.isoformat(), *_amounts(day))
    table.add_row("total", *_amounts(report), style="bold")
    return table


def _amounts(totals: UsageTotals) -> list[str]:
    return [
        f"{value:,}"
        for value in (
            totals.jobs,
            totals.pixels_processed,
            totals.bytes_in,
            totals.bytes_out,
            totals.bytes_saved,
            totals.compute_time_ms,
        )
    ]


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _console() -> Console:
    console = Console()
    # Piped output has no width: do not squeeze the table into rich's default 80 columns.
    return console if console.is_terminal else Console(width=200)
