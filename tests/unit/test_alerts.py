"""The alerting rules as code: promtool's unit tests pass, and every alert is tested, linked
to its runbook section and reads only metrics the daemon defines."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.observability import (
    ALERTS,
    ALERTS_TEST,
    ROOT,
    RUNBOOK,
    alert_rules,
    exported_names,
    prometheus_binary,
    referenced_metrics,
)


def test_promtool_checks_and_unit_tests_pass() -> None:
    tool = prometheus_binary("promtool")
    check = subprocess.run(
        [tool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        [tool, "test", "rules", str(ALERTS_TEST)], capture_output=True, text=True, timeout=120
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alert_rules()} <= tested


def test_every_alert_links_an_existing_runbook_section() -> None:
    # GitHub's heading anchors: lower case, spaces to dashes, punctuation dropped.
    anchors = {
        re.sub(r"[^a-z0-9-]", "", title.strip().lower().replace(" ", "-"))
        for title in re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.M)
    }
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        url = str(annotations["runbook_url"])
        page, _, anchor = url.partition("#")
        assert (ROOT / page).resolve() == RUNBOOK, url
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in {RUNBOOK.name}"
        assert anchor == str(rule["alert"]).lower(), url


def test_alerts_read_only_metrics_the_daemon_exports() -> None:
    exported = exported_names()
    for rule in alert_rules():
        for name in referenced_metrics(str(rule["expr"])):
            assert name in exported, f"{rule['alert']} reads {name}, which no metric exports"
