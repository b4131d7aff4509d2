"""Reading Prometheus text, and checking it with ``promtool`` (Debian package ``prometheus``;
``.ci/run`` installs it when missing)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: apt-get install prometheus (.ci/run does)")
    return path


# promtool's linter objects to the "ms" in this name, but SPEC 6 keeps the original's names so
# that its dashboards keep working: the one lint finding accepted.
_ORIGINAL_NAMES = (
    "pixelflow_usage_compute_time_ms_total",
    "pixelflow_usage_compute_time_ms_created",
)
_LINT_PROBLEMS = 3  # promtool's exit code for lint findings (a parse error is 1)


def check_metrics(exposition: str) -> None:
    """The exposition parses, and lints clean except for the original's fixed names."""
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=exposition.encode(),
        capture_output=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode in (0, _LINT_PROBLEMS), output
    findings = [line for line in output.splitlines() if line.strip()]
    unexpected = [line for line in findings if not line.startswith(_ORIGINAL_NAMES)]
    assert not unexpected, output


def check_rules(path: Path) -> str:
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, timeout=60
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    return output


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample: (name, labels) → value."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(exposition: str, name: str, **labels: str) -> float:
    """The one sample ``name`` with exactly ``labels`` (fails if it is missing)."""
    key = (name, frozenset(labels.items()))
    found = samples(exposition)
    assert key in found, f"{name}{labels} not exposed; have: " + ", ".join(
        sorted({f"{n}{dict(sorted(ls))}" for n, ls in found if n.startswith(name)})
    )
    return found[key]
