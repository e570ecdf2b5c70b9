"""The share-scheduler Grafana dashboard, as code (grafana-foundation-sdk).

    python deploy/grafana/dashboard.py > deploy/grafana/share-scheduler.json

The JSON beside this file is what Grafana imports; tests/unit/test_dashboard.py regenerates
it in memory and fails when the two differ, and tests/e2e/test_prometheus.py runs every query
against a real Prometheus scraping a real daemon. Queries read only the metrics defined in
scheduler/metrics.py, filtered by the ``job`` and ``instance`` variables.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

UID = "share-scheduler"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'job=~"$job", instance=~"$instance"'
TABLE = PromQueryFormat.TABLE


def _query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    return query.legend_format(legend) if legend else query


def _stat(title: str, expr: str, unit: str, description: str, legend: str = "") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_query(expr, legend))
        .unit(unit)
        .height(4)
        .span(4)
    )


def _series(
    title: str, unit: str, description: str, *queries: tuple[str, str], span: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(span)
    )
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index)))
    return panel


# The columns of the Lines table: one per-line gauge each (scheduler.metrics.LINE_GAUGES).
LINE_COLUMNS = (
    ("share_scheduler_card_active", "card active"),
    ("share_scheduler_line_paused", "paused"),
    ("share_scheduler_line_ineligible", "ineligible"),
    ("share_scheduler_line_chats", "chats"),
    ("share_scheduler_line_due_chats", "due"),
    ("share_scheduler_line_shared_today", "shared today"),
)


def _lines_table() -> table.Panel:
    panel = (
        table.Panel()
        .title("Lines")
        .description("Per line: card active, paused, ineligible, chats, due now, shared today.")
        .datasource(DATASOURCE)
        .height(8)
        .span(24)
    )
    for index, (metric, legend) in enumerate(LINE_COLUMNS):
        query = _query(f"max by (line) ({metric}{{{SEL}}})", legend, chr(ord("A") + index))
        panel = panel.with_target(query.instant().format(TABLE))
    return panel


def _variable(name: str, label: str, query: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def build() -> db.Dashboard:
    rate = "[$__rate_interval]"
    return (
        db.Dashboard("share-scheduler")
        .uid(UID)
        .description("Contact card shares, the share pass, cards and lines, webhooks.")
        .tags(["share-scheduler", "linq"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(_variable("job", "Job", "label_values(share_scheduler_build_info, job)"))
        .with_variable(
            _variable(
                "instance",
                "Instance",
                'label_values(share_scheduler_build_info{job=~"$job"}, instance)',
            )
        )
        .with_row(db.Row("Is it sharing?"))
        .with_panel(
            _stat(
                "Since the last successful pass",
                f"time() - max(share_scheduler_pass_last_success_timestamp_seconds{{{SEL}}})",
                "s",
                "Time since a share pass last completed against the ledger. It keeps growing "
                "while the ledger or the token is down (alert: ShareSchedulerNoSuccessfulPass).",
            )
        )
        .with_panel(
            _stat(
                "Token rejected",
                f"max(share_scheduler_token_rejected{{{SEL}}})",
                "bool_yes_no",
                "1 while Linq rejects the API token: nothing is shared.",
            )
        )
        .with_panel(
            _stat(
                "Due now",
                f"sum(share_scheduler_due_chats{{{SEL}}})",
                "short",
                "Chats due and not claimed after the last pass: steadily high means the passes "
                "do not keep up.",
            )
        )
        .with_panel(
            _stat(
                "Shared today",
                f"sum(share_scheduler_line_shared_today{{{SEL}}})",
                "short",
                "Chats shared today (report zone), all lines, ambiguous attempts included.",
            )
        )
        .with_panel(
            _stat(
                "Lines paused",
                f"sum(share_scheduler_line_paused{{{SEL}}})",
                "short",
                "Lines an operator paused (`line pause`).",
            )
        )
        .with_panel(
            _stat(
                "Version",
                f"count by (version) (share_scheduler_build_info{{{SEL}}})",
                "short",
                "Running versions and how many instances run each.",
                legend="{{version}}",
            )
        )
        .with_row(db.Row("Shares"))
        .with_panel(
            _series(
                "Shares by outcome",
                "ops",
                "Finished share claims per second, by outcome.",
                (
                    f"sum by (outcome) (rate(share_scheduler_shares_total{{{SEL}}}{rate}))",
                    "{{outcome}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Share error ratio",
                "percentunit",
                "Failed and rejected shares over all calls (alert above 20%).",
                (
                    # "or vector(0)": no failure yet reads 0 %, not "no data".
                    "(sum(rate(share_scheduler_shares_total"
                    f'{{{SEL}, outcome=~"failed|rejected"}}{rate})) or vector(0))'
                    " / sum(rate(share_scheduler_shares_total"
                    f'{{{SEL}, outcome!="skipped"}}{rate}))',
                    "error ratio",
                ),
            )
        )
        .with_panel(
            _series(
                "Share call latency",
                "s",
                "share_contact_card call latency quantiles.",
                (
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(share_scheduler_share_call_seconds_bucket{{{SEL}}}{rate})))",
                    "p50",
                ),
                (
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate(share_scheduler_share_call_seconds_bucket{{{SEL}}}{rate})))",
                    "p95",
                ),
                span=8,
            )
        )
        .with_panel(
            _series(
                "Ambiguous attempts (1 h)",
                "short",
                "Attempts ended without a known outcome in the last hour (counted as shared).",
                (
                    f"sum(increase(share_scheduler_ambiguous_attempts_total{{{SEL}}}[1h]))",
                    "ambiguous",
                ),
                span=8,
            )
        )
        .with_panel(
            _series(
                "Linq API errors by code",
                "ops",
                "Failed Linq requests per second (every try), by Linq code or HTTP status.",
                (
                    f"sum by (code) (rate(share_scheduler_api_errors_total{{{SEL}}}{rate}))",
                    "{{code}}",
                ),
                span=8,
            )
        )
        .with_row(db.Row("Share pass"))
        .with_panel(
            _series(
                "Pass duration",
                "s",
                "Duration of the last share pass, per instance.",
                (f"share_scheduler_pass_last_duration_seconds{{{SEL}}}", "{{instance}}"),
            )
        )
        .with_panel(
            _series(
                "Pass failures",
                "ops",
                "Passes that did not complete, by reason (ledger, token_rejected).",
                (
                    f"sum by (reason) (rate(share_scheduler_pass_failures_total{{{SEL}}}{rate}))",
                    "{{reason}}",
                ),
            )
        )
        .with_row(db.Row("Lines"))
        .with_panel(_lines_table())
        .with_panel(
            _series(
                "Shared today per line",
                "short",
                "Chats shared today, per line.",
                (f"max by (line) (share_scheduler_line_shared_today{{{SEL}}})", "{{line}}"),
            )
        )
        .with_panel(
            _series(
                "Due now per line",
                "short",
                "Chats due and unclaimed, per line.",
                (f"max by (line) (share_scheduler_line_due_chats{{{SEL}}})", "{{line}}"),
            )
        )
        .with_row(db.Row("Webhooks"))
        .with_panel(
            _series(
                "Webhook deliveries by result",
                "ops",
                "Deliveries per second, by result (applied, duplicate, ignored, signature_*...).",
                (
                    f"sum by (result) (rate(share_scheduler_webhook_events_total{{{SEL}}}{rate}))",
                    "{{result}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Webhook clock skew",
                "s",
                "This host's clock minus the last signed delivery's timestamp (alert beyond 60 s).",
                (f"share_scheduler_webhook_clock_skew_seconds{{{SEL}}}", "{{instance}}"),
            )
        )
        .with_row(db.Row("Process"))
        .with_panel(
            _series(
                "Resident memory",
                "bytes",
                "Resident set size of each daemon.",
                (f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}"),
            )
        )
        .with_panel(
            _series(
                "CPU",
                "percentunit",
                "CPU seconds per second of each daemon.",
                (f"rate(process_cpu_seconds_total{{{SEL}}}{rate})", "{{instance}}"),
            )
        )
    )


def render() -> str:
    """The dashboard JSON as committed: sorted keys, two-space indent, final newline."""
    data: Any = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
