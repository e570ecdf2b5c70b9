"""Dashboard and alerts against a real Prometheus scraping a real daemon on the simulator.

Prometheus (the Debian package's binary) runs on a free loopback port with a scrape job on
the daemon's ``/metrics`` every second and ``deploy/prometheus/alerts.yaml`` loaded. Once the
daemon has shared, every query of the generated dashboard and every alert expression is
evaluated through ``/api/v1/query``: none may error, and the main panels must return data.

A second test takes the PostgreSQL ledger away from a running daemon (connections refused and
cut) and checks that ``/metrics`` keeps the last successful pass where it was while passes
fail, then moves it again once the ledger is back.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scheduler.demo.processes import DaemonProcess, free_port
from tests.conftest import PG_DSN
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, wait_for
from tests.observability import ALERTS, alert_rules, dashboard_queries, prometheus_binary

pytestmark = pytest.mark.e2e
L1 = "+14155550100"
DAY1_0930 = DAY1_0800_NY + timedelta(hours=1, minutes=30)

# Panels a healthy daemon that has shared must fill (others may rightly be empty: no API
# errors, no ineligible line, no failed share).
MAIN_PANELS = {
    "Since the last successful pass",
    "Token rejected",
    "Due now",
    "Shared today",
    "Lines paused",
    "Version",
    "Shares by outcome",
    "Share call latency",
    "Pass duration",
    "Pass failures",
    "Lines",
    "Shared today per line",
    "Due now per line",
    "Webhook deliveries by result",
    "Resident memory",
    "CPU",
}
# Grafana's variables and macros, as Grafana would expand them for "All" on a 1 s scrape.
EXPANSIONS = {"$__rate_interval": "1m", "$job": ".+", "$instance": ".+"}


def expand(expr: str) -> str:
    for variable, value in EXPANSIONS.items():
        expr = expr.replace(variable, value)
    return expr


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def query(self, expr: str) -> dict[str, Any]:
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body: dict[str, Any] = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_prometheus(workdir: Path, target: str) -> Prometheus:
    binary = prometheus_binary("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {"job_name": "share-scheduler", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(proc, f"http://127.0.0.1:{port}", log_path)

    def ready() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            return httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=60, what="Prometheus to be ready")
    return prom


def _start(stack: Stack, overrides: dict[str, Any] | None = None) -> DaemonProcess:
    """Simulator and daemon with one line; the card is created and activates quickly."""
    port = free_port()
    stack.start_sim(port, activation_delay=0.2)
    daemon = stack.add_daemon(
        {"lines": [{"number": L1, "timezone": "America/New_York"}], **(overrides or {})},
        port=port,
    )
    daemon.start(timeout=60)
    stack.create_card(L1)
    return daemon


def _share_three(stack: Stack) -> None:
    """Three chats learnt by webhook, then shared once the window opens."""
    chats = {stack.create_chat(L1, [f"+1212555{i:04d}"]) for i in range(3)}
    stack.drain_webhooks()
    stack.set_time(DAY1_0930)
    wait_for(
        lambda: chats <= {s["chat_id"] for s in stack.shares()},
        timeout=90,
        what="the three chats shared",
    )


def test_dashboard_queries_and_alerts_evaluate_on_real_prometheus(stack: Stack) -> None:
    daemon = _start(stack)
    prom = start_prometheus(stack.workdir, f"127.0.0.1:{daemon.port}")
    try:
        wait_for(
            lambda: bool(prom.query("up == 1")["result"]),
            timeout=60,
            what="Prometheus to scrape the daemon",
        )
        # Shares while Prometheus watches: the rates and latency quantiles have data.
        _share_three(stack)
        queries = dashboard_queries()
        shares = next(q for q in queries if q.panel == "Shares by outcome")
        wait_for(
            lambda: bool(prom.query(expand(shares.expr))["result"]),
            timeout=90,
            what="Prometheus to have scraped the shares twice",
        )
        wait_for(
            lambda: bool(
                prom.query("share_scheduler_pass_last_success_timestamp_seconds > 0")["result"]
            ),
            timeout=60,
            what="a successful pass scraped",
        )
        filled: set[str] = set()
        print("\n--- dashboard panels ---")
        for q in queries:
            result = prom.query(expand(q.expr))["result"]
            values = [
                (
                    {k: v for k, v in r["metric"].items() if k not in ("job", "instance")},
                    r["value"][1],
                )
                for r in result
            ]
            print(f"[{q.panel} / {q.ref}] {len(result)} series {values}")
            if result:
                filled.add(q.panel)
        assert filled >= MAIN_PANELS, f"panels without data: {sorted(MAIN_PANELS - filled)}"

        print("--- alerts ---")
        for rule in alert_rules():
            result = prom.query(str(rule["expr"]))["result"]
            print(f"[{rule['alert']}] firing candidates: {len(result)} {result}")
            # A healthy daemon that just shared trips none of them.
            assert result == [], rule["alert"]
        groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        print(f"--- rules loaded by Prometheus: {loaded}")
        assert set(loaded) == {rule["alert"] for rule in alert_rules()}
        # "unknown" until a rule's first evaluation; "err" would mean a broken expression.
        assert set(loaded.values()) <= {"ok", "unknown"}
    finally:
        prom.stop()
        print("--- prometheus.log (tail) ---")
        print("\n".join(prom.log_path.read_text(errors="replace").splitlines()[-15:]))


def _metric(daemon: DaemonProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{daemon.base_url}/metrics", timeout=10).text
    want = set(labels.items())
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and want <= set(s.labels.items())
    )


@pytest.fixture
def pg_stack(tmp_path: Path, empty_pg_url: str) -> Iterator[tuple[Stack, str]]:
    stack = Stack(tmp_path, DAY1_0800_NY, database_url=empty_pg_url)
    try:
        yield stack, empty_pg_url.rsplit("/", 1)[1]
    finally:
        stack.stop()
        for daemon in stack.daemons:
            print(f"--- {daemon.log_path.name} (tail) ---")
            print("\n".join(daemon.logs().splitlines()[-30:]))


def _refuse_connections(dbname: str, refuse: bool) -> None:
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS {'false' if refuse else 'true'}")
        if refuse:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )


@pytest.mark.postgres
def test_last_successful_pass_stays_while_the_ledger_is_down(
    pg_stack: tuple[Stack, str],
) -> None:
    stack, dbname = pg_stack
    daemon = _start(stack, {"database": {"connect_timeout": "1s"}})
    _share_three(stack)
    success = "share_scheduler_pass_last_success_timestamp_seconds"
    end = "share_scheduler_pass_last_end_timestamp_seconds"
    failures = "share_scheduler_pass_failures_total"
    wait_for(lambda: _metric(daemon, success) > 0, timeout=30, what="a successful pass")

    _refuse_connections(dbname, True)
    try:
        failed_before = _metric(daemon, failures, reason="ledger")
        wait_for(
            lambda: _metric(daemon, failures, reason="ledger") >= failed_before + 2,
            timeout=60,
            what="two passes failing on the ledger",
        )
        last_success = _metric(daemon, success)
        first_end = _metric(daemon, end)
        wait_for(
            lambda: (
                _metric(daemon, end) > first_end
                and _metric(daemon, failures, reason="ledger") >= failed_before + 4
            ),
            timeout=60,
            what="more failed passes",
        )
        print(
            f"ledger down: last success {last_success:.3f}, last end {_metric(daemon, end):.3f}, "
            f"failed passes {_metric(daemon, failures, reason='ledger'):.0f}"
        )
        # Passes go on ending (the end timestamp moves) but none succeeds: an alert on
        # time() - last success fires, one on the end timestamp would stay silent.
        assert _metric(daemon, success) == last_success
        assert _metric(daemon, end) > last_success
        ready = httpx.get(f"{daemon.base_url}/readyz", timeout=10)
        assert ready.status_code == 503
    finally:
        _refuse_connections(dbname, False)

    wait_for(
        lambda: _metric(daemon, success) > last_success,
        timeout=60,
        what="a successful pass once the ledger is back",
    )
    assert daemon.stop() == 0


def test_token_rejected_is_a_gauge(stack: Stack) -> None:
    # The daemon holds a token Linq (the simulator) does not know.
    stack.env["LINQ_API_KEY"] = "not-the-partner-token"
    daemon = _start(stack)
    rejected = "share_scheduler_token_rejected"
    wait_for(lambda: _metric(daemon, rejected) == 1, timeout=30, what="the token rejected")
    ready = httpx.get(f"{daemon.base_url}/readyz", timeout=10).json()
    assert ready["checks"]["token"].startswith("rejected")
    assert "not-the-partner-token" not in httpx.get(f"{daemon.base_url}/metrics", timeout=10).text
    assert daemon.stop() == 0
