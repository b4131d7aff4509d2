""".env.example tells the truth: its values start every role, and it documents every variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pixelflow.config import Role, load_settings
from tests.support.envdoc import documented, documented_for_pixelflow, read_by_code

REPO = Path(__file__).resolve().parents[2]
ASSIGNMENT = re.compile(r"^(?P<commented># ?)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def sections() -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """Section title → (active assignments, commented-out assignments)."""
    found: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    title = ""
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.startswith("# === "):
            title = line.removeprefix("# === ").split(" ===")[0].strip()
            found[title] = ({}, {})
        elif match := ASSIGNMENT.match(line):
            active, commented = found[title]
            target = commented if match["commented"] else active
            target[match["name"]] = match["value"]
    return found


def active() -> dict[str, str]:
    return {name: value for lines, _ in sections().values() for name, value in lines.items()}


def test_the_sections_are_there() -> None:
    assert list(sections()) == [
        "Every role",
        "serve (the embedded default)",
        "api, worker, migrate (production)",
        "Optional, any role (examples)",
        "compose.yaml only (not read by PixelFlow)",
    ]
    for role_only in (
        "serve (the embedded default)",
        "api, worker, migrate (production)",
        "compose.yaml only (not read by PixelFlow)",
    ):
        role_active, _ = sections()[role_only]
        assert not role_active, role_only  # nothing for one role only is on by default


def test_loading_it_as_it_is_changes_nothing_for_serve(tmp_path: Path) -> None:
    base = {"PIXELFLOW_DATA_DIR": str(tmp_path)}
    loaded = load_settings(Role.SERVE, {**base, **active()})
    assert loaded == load_settings(Role.SERVE, base)


@pytest.mark.parametrize("role", [Role.API, Role.WORKER, Role.MIGRATE])
def test_its_production_values_start_the_production_roles(role: Role) -> None:
    _, production = sections()["api, worker, migrate (production)"]
    settings = load_settings(role, {**active(), **production})
    assert settings.database_url == production["PIXELFLOW_DATABASE_URL"]


def test_its_serve_values_start_serve(tmp_path: Path) -> None:
    _, serve = sections()["serve (the embedded default)"]
    settings = load_settings(Role.SERVE, {**active(), **serve, "PIXELFLOW_DATA_DIR": str(tmp_path)})
    assert str(settings.api_addr) == serve["PIXELFLOW_API_ADDR"]


def test_every_variable_the_code_reads_is_documented() -> None:
    source = (REPO / "pixelflow" / "config.py").read_text()
    read = set(re.findall(r"\b(?:get|parse|require)\(\s*\"([A-Z][A-Z0-9_]+)\"", source))
    assert len(read) > 30  # the pattern still finds the reads
    documented = {name for both in sections().values() for part in both for name in part}
    assert read - documented == set()


def test_every_variable_named_anywhere_in_the_code_is_documented() -> None:
    """Beyond config.py's reads: names in messages and other modules (OTEL_*, ...) too."""
    read = read_by_code()
    assert {"PIXELFLOW_DATABASE_URL", "WORKER_METRICS_ADDR", "OTEL_TRACES_EXPORTER"} <= read
    assert read - documented() == set()


def test_every_documented_pixelflow_variable_is_read() -> None:
    # AWS_* and OTEL_* are read by libraries (botocore, the OpenTelemetry SDK) under their
    # standard names; ours must not go stale. The compose-only section is compose's.
    ours = {
        name for name in documented_for_pixelflow() if name.startswith(("PIXELFLOW_", "WORKER_"))
    }
    assert ours - read_by_code() == set()
