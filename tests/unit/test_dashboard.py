"""The Grafana dashboard as code: the committed JSON is what the script generates, and its
queries read only metrics the daemon exports."""

from __future__ import annotations

import json

from tests.observability import (
    DASHBOARD_JSON,
    dashboard_module,
    dashboard_queries,
    exported_names,
    referenced_metrics,
)


def test_committed_json_is_what_the_script_generates() -> None:
    generated = dashboard_module().render()
    assert generated == DASHBOARD_JSON.read_text(), (
        "deploy/grafana/share-scheduler.json is stale: run "
        "`python deploy/grafana/dashboard.py > deploy/grafana/share-scheduler.json`"
    )


def test_every_query_reads_exported_metrics() -> None:
    exported = exported_names()
    queries = dashboard_queries()
    assert len(queries) >= 15
    for query in queries:
        names = referenced_metrics(query.expr)
        assert names, f"{query.panel}: reads no share-scheduler metric"
        assert names <= exported, f"{query.panel} reads {names - exported}"


def test_panels_use_the_datasource_variable_and_filter_by_instance() -> None:
    dashboard = json.loads(DASHBOARD_JSON.read_text())
    assert dashboard["uid"] == "share-scheduler"
    assert {v["name"] for v in dashboard["templating"]["list"]} == {
        "datasource",
        "job",
        "instance",
    }
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], panel["title"]
