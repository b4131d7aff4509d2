"""The alert rules and the dashboard: valid for their tools, and over metrics that exist."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from pixelflow.telemetry.metrics import Metrics
from tests.support.prometheus import check_rules, promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "pixelflow.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
_METRIC = re.compile(r"\b((?:pixelflow|process)_[a-z_]+)\b")


def exposed_names() -> set[str]:
    """Every series name a PixelFlow process can expose (labelled series included, which
    appear only once used)."""
    names = set()
    for family in Metrics().registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def referenced(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in _METRIC.findall(expr)}


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    return [rule["expr"] for rule in rules]


def dashboard_targets() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t for panel in dashboard["panels"] for t in panel.get("targets", [])]


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    assert "SUCCESS: 6 rules found" in check_rules(ALERTS)
    result = subprocess.run(
        [promtool(), "test", "rules", str(DEPLOY / "prometheus" / "alerts.test.yaml")],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_alerts_cover_what_operators_page_on() -> None:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} >= {
        "PixelflowJobsFailing",
        "PixelflowQueueGrowing",
        "PixelflowNoWorkerAlive",
        "PixelflowWebhookFailures",
        "PixelflowApiLatencyHigh",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule


def test_alerts_reference_only_exposed_metrics() -> None:
    used = referenced(alert_expressions())
    assert used, "no metric found in the rules"
    assert used <= exposed_names(), used - exposed_names()


def test_dashboard_is_valid_and_references_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    used = referenced([t["expr"] for t in dashboard_targets()])
    assert used <= exposed_names(), used - exposed_names()
    # Every PixelFlow metric is on the dashboard somewhere (a new one needs a panel).
    ours = {name for name in exposed_names() if name.startswith("pixelflow_")}
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in ours}
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert families <= shown, families - shown
