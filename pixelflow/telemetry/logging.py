"""Structured logs: one event per line, readable text for a terminal, JSON in production.

Each line carries the context bound for it (``job_id``, ``attempt``, ``trace_id``,
``user_id``: see ``telemetry.context``). Libraries that would log request URLs (presigned ones
included) or raw queue payloads are held to warnings.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from pixelflow.telemetry.context import FIELDS, ContextFilter

# Loggers whose INFO lines carry what must not reach a log: arq prints each job's arguments
# (the raw queue payload), httpx/httpcore/botocore print request URLs (presigned ones among
# them). pyvips narrates every libvips operation.
_QUIET = ("arq.worker", "arq.jobs", "httpx", "httpcore", "botocore", "aiobotocore", "pyvips")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value…``; a traceback is folded onto the same line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{field}={value}"
            for field in FIELDS
            if (value := getattr(record, field, None)) is not None
        ]
        if fields:
            head, sep, rest = line.partition("\n")
            line = f"{head} {' '.join(fields)}{sep}{rest}"
        return line.replace("\n", "\n    ") if "\n" in line else line


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
