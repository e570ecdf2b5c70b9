"""The alert rules and the dashboard as the tests read them, and the metrics they may use."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from scheduler.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
DASHBOARD_SCRIPT = ROOT / "deploy" / "grafana" / "dashboard.py"
DASHBOARD_JSON = ROOT / "deploy" / "grafana" / "share-scheduler.json"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_METRIC = re.compile(r"\b((?:share_scheduler|process)_[a-z_]+)\b")


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str


def prometheus_binary(name: str) -> str:
    """The path of ``promtool`` or ``prometheus``: missing fails in CI, skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (Debian: apt-get install prometheus; .ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("share_scheduler_dashboard", DASHBOARD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_queries(dashboard: dict[str, Any] | None = None) -> list[PanelQuery]:
    """Every query of every panel of the committed dashboard (or of ``dashboard``)."""
    if dashboard is None:
        dashboard = json.loads(DASHBOARD_JSON.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append(PanelQuery(panel["title"], target["refId"], target["expr"]))
    return found


def referenced_metrics(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def exported_names() -> set[str]:
    """Every sample name the daemon's registry exports, or will once a child is set."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
        if family.type == "info":
            names.add(family.name + "_info")
    return names
