"""What ``.env.example`` documents, and what the code reads."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / ".env.example"
# A documented variable: `NAME=value` or commented out, `# NAME=value`.
_DOCUMENTED = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=", re.MULTILINE)
# A variable name as a string literal in the code (read, or named in an error message).
_READ = re.compile(r"[\"']((?:PIXELFLOW|WORKER|WEBHOOK|OTEL|AWS)_[A-Z0-9_]+)[\"']")
COMPOSE_ONLY_HEADING = "# === compose.yaml only"


def documented() -> set[str]:
    return set(_DOCUMENTED.findall(ENV_EXAMPLE.read_text()))


def documented_for_pixelflow() -> set[str]:
    """Documented variables outside the compose-only section."""
    text = ENV_EXAMPLE.read_text().split(COMPOSE_ONLY_HEADING)[0]
    return set(_DOCUMENTED.findall(text))


def read_by_code() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "pixelflow").rglob("*.py"):
        names.update(_READ.findall(path.read_text()))
    return names


_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, values: dict[str, str] | None = None) -> str:
    """compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``: a value from
    ``values``, else the default, else (a required secret) ``test-<name>``."""
    values = values or {}

    def substitute(match: re.Match[str]) -> str:
        name, kind, rest = match[1], match[2], match[3]
        if name in values:
            return values[name]
        if kind in (":-", "-"):
            return rest
        return f"test-{name.lower()}"

    return _REFERENCE.sub(substitute, text.replace("$$", "\0")).replace("\0", "$")


def references(text: str) -> set[str]:
    return {match[1] for match in _REFERENCE.finditer(text.replace("$$", ""))}
