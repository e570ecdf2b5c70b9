"""The operator's side on a ledger filled by the real daemon: commands, metrics, readyz, logs.

One daily flow runs once (a module fixture): the simulator and a daemon process, two lines
with cards, chats learnt by webhook, shares through injected 5xx and 429 faults. The tests
then run each ``share-scheduler`` command as a process with ``--json`` and check its answer
against the ledger and the simulator; the last ones move to the next day to check the plan
against what happened, then stop the daemon with SIGTERM and read its logs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.clock import CLOCK_FILE_ENV, set_clock_file
from scheduler.demo.processes import DaemonProcess, free_port
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import API_KEY, WEBHOOK_SECRET, Stack, wait_for

pytestmark = pytest.mark.e2e
NY = ZoneInfo("America/New_York")
L1 = "+14155550100"
L2 = "+14155550111"
DAY1_0930 = DAY1_0800_NY + timedelta(hours=1, minutes=30)
DAY2_0930 = DAY1_0930 + timedelta(days=1)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Flow:
    stack: Stack
    daemon: DaemonProcess
    eligible: dict[str, str]  # chat id -> line
    sms: str
    opted_out: str
    outputs: list[str] = field(default_factory=list)

    def cli(self, *args: str, rc: int = 0, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "scheduler", *args, "--config", str(self.daemon.config_path)],
            capture_output=True,
            text=True,
            env=env or self.daemon.env,
            timeout=120,
        )
        self.outputs += [proc.stdout, proc.stderr]
        assert proc.returncode == rc, (
            f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc.stdout

    def json(self, *args: str, rc: int = 0, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.cli(*args, "--json", rc=rc, env=env))

    def chats(self, *filters: str) -> list[dict[str, Any]]:
        return list(self.json("ledger", "list", "--limit", "1000", *filters))

    def show(self, chat_id: str) -> dict[str, Any]:
        return dict(self.json("ledger", "show", chat_id))

    def attempts(self) -> list[dict[str, Any]]:
        """Every share attempt, read straight from the SQLite ledger (fewer processes)."""
        path = self.stack.database_url.split("///", 1)[1]
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM share_attempts ORDER BY id")]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.daemon.base_url}/metrics", timeout=10).text
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    stack = Stack(tmp_path_factory.mktemp("operator"), DAY1_0800_NY)
    try:
        port = free_port()
        # A fixed seed: the first share calls draw a 5xx and a 429 (each call draws in turn).
        stack.start_sim(port, activation_delay=0.3, extra=["--seed", "8"])
        daemon = stack.add_daemon(
            {
                "lines": [
                    {"number": L1, "timezone": "America/New_York"},
                    {"number": L2, "timezone": "America/New_York"},
                ],
                "share_pass": {"failure_backoff": "1s"},
            },
            port=port,
        )
        daemon.start()
        stack.create_card(L1)
        stack.create_card(L2, "Acme Support")
        eligible = {stack.create_chat(L1, [f"+1212555{i:04d}"]): L1 for i in range(4)}
        eligible |= {stack.create_chat(L2, [f"+1212555{100 + i:04d}"]): L2 for i in range(2)}
        sms = stack.create_chat(L1, ["+12125550200"], service="SMS")
        opted_out = stack.create_chat(L1, ["+12125550201"])
        assert stack.sim is not None
        stack.sim.control("POST", f"chats/{opted_out}/inbound", json={"text": "STOP"})
        stack.drain_webhooks()
        f = Flow(stack, daemon, eligible, sms, opted_out)
        wait_for(lambda: len(f.chats()) == 8, what="8 chats learnt by webhook")
        # Some share calls fail with 5xx (retried in the claim) or 429 (retried after
        # Retry-After): the counters then have errors to agree on.
        stack.sim.control(
            "POST",
            "faults",
            json={"share_fault_rate": 0.25, "share_429_rate": 0.2, "retry_after": 1},
        )
        stack.set_time(DAY1_0930)
        wait_for(
            lambda: set(eligible) <= {s["chat_id"] for s in stack.shares()},
            timeout=60,
            what="every eligible chat shared on day 1",
        )
        stack.sim.control("POST", "faults", json={"share_fault_rate": 0, "share_429_rate": 0})
        wait_for(lambda: f.chats("--due") == [], what="nothing left due")
        yield f
    finally:
        stack.stop()


def _counter(samples: dict[Any, float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def test_metrics_agree_with_the_ledger(flow: Flow) -> None:
    d0 = "d0"
    mine = [a for a in flow.attempts() if a["instance"] == d0]
    assert mine, "the daemon recorded attempts"
    by_outcome_line = Counter((a["outcome"], a["line"]) for a in mine)
    assert by_outcome_line[("shared", L1)] >= 4
    assert by_outcome_line[("shared", L2)] >= 2
    calls = flow.stack.calls()
    by_code = Counter(str(c["code"]) for c in calls if c.get("code"))
    assert by_code, "faults were injected, so some calls failed"

    def agree() -> bool:
        m = flow.metrics()
        status = Counter(c["status"] for c in flow.chats())
        return (
            all(
                _counter(m, "share_scheduler_shares_total", outcome=o, line=ln) == n
                for (o, ln), n in by_outcome_line.items()
            )
            and _counter(m, "share_scheduler_shares_total") == len(mine)
            and all(
                _counter(m, "share_scheduler_chats", status=s) == status.get(s, 0)
                for s in ("active", "paused", "opted_out", "gone")
            )
            and _counter(m, "share_scheduler_due_chats") == 0
        )

    wait_for(agree, timeout=15, what="/metrics to agree with the ledger")
    m = flow.metrics()
    # Every try is one call to Linq: the latency histogram, the API errors by code and the
    # simulator's call log count the same calls.
    assert _counter(m, "share_scheduler_share_call_seconds_count") == sum(a["tries"] for a in mine)
    assert _counter(m, "share_scheduler_share_call_seconds_count") == len(calls)
    for code, n in by_code.items():
        assert _counter(m, "share_scheduler_api_errors_total", code=code) == n
    assert _counter(m, "share_scheduler_card_active", line=L1) == 1
    assert _counter(m, "share_scheduler_card_active", line=L2) == 1
    assert _counter(m, "share_scheduler_chats", status="opted_out") == 1
    webhooks = _counter(m, "share_scheduler_webhook_events_total", result="applied")
    assert webhooks >= 8, "each chat was learnt from at least one applied webhook"
    start = _counter(m, "share_scheduler_pass_last_start_timestamp_seconds")
    end = _counter(m, "share_scheduler_pass_last_end_timestamp_seconds")
    assert start > 0 and end > 0
    assert _counter(m, "share_scheduler_pass_last_duration_seconds") >= 0


def test_readyz_reports_each_check(flow: Flow) -> None:
    resp = httpx.get(f"{flow.daemon.base_url}/readyz", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {
        "ready": True,
        "checks": {"ledger": "ok", "schema": "ok", "token": "ok", "scheduler": "running"},
    }


def test_ledger_list_show_stats_export(flow: Flow) -> None:
    everything = flow.chats()
    assert len(everything) == 8
    today = {c["chat_id"] for c in flow.chats("--shared-today")}
    assert today == set(flow.eligible)
    never = {c["chat_id"] for c in flow.chats("--never-shared")}
    assert never == {flow.sms, flow.opted_out}
    assert [c["chat_id"] for c in flow.chats("--status", "opted_out")] == [flow.opted_out]
    line2 = {c["chat_id"] for c in flow.chats("--line", L2)}
    assert line2 == {c for c, ln in flow.eligible.items() if ln == L2}
    assert len(flow.chats("--limit", "3")) == 3

    chat = next(iter(flow.eligible))
    shown = flow.show(chat)
    assert shown["chat"]["chat_id"] == chat
    assert shown["chat"]["share_count"] == 1
    outcomes = [a["outcome"] for a in shown["attempts"]]
    assert outcomes.count("shared") == 1 and outcomes[-1] == "shared"
    assert all(a["forced"] is False for a in shown["attempts"])
    flow.cli("ledger", "show", "no-such-chat", rc=1)

    stats = flow.json("ledger", "stats")
    totals = stats["totals"]
    assert stats["zone"] == "America/New_York"
    assert stats["today"] == DAY1_0930.astimezone(NY).date().isoformat()
    assert totals["chats"] == 8
    assert totals["by_status"]["opted_out"] == 1
    assert totals["by_service"] == {"SMS": 1, "iMessage": 7}
    assert totals["shared_today"] == 6
    assert totals["shared_yesterday"] == 0
    assert totals["due_now"] == 0
    # Next due: tomorrow's window opening, 09:00 in New York.
    next_due = _at(totals["next_due_at"]).astimezone(NY)
    assert (next_due.date(), next_due.hour) == (
        (DAY1_0930 + timedelta(days=1)).astimezone(NY).date(),
        9,
    )
    per_line = {s["line"]: s for s in stats["lines"]}
    assert (per_line[L1]["shared_today"], per_line[L2]["shared_today"]) == (4, 2)
    assert per_line[L1]["card_state"] == per_line[L2]["card_state"] == "active"
    fails = sum(1 for a in flow.attempts() if a["outcome"] == "failed")
    assert totals["failed_24h"] == fails
    assert "shared today" in flow.cli("ledger", "stats"), "a table for people"

    rows = list(csv.DictReader(io.StringIO(flow.cli("ledger", "export", "--format", "csv"))))
    assert sorted(r["chat_id"] for r in rows) == sorted(c["chat_id"] for c in everything)
    assert {r["chat_id"]: int(r["share_count"]) for r in rows if r["chat_id"] in flow.eligible} == (
        dict.fromkeys(flow.eligible, 1)
    )
    lines = flow.cli("ledger", "export", "--format", "jsonl", "--line", L1).splitlines()
    records = [json.loads(x) for x in lines]
    assert len(records) == 6 and {r["line"] for r in records} == {L1}
    out = flow.stack.workdir / "export.jsonl"
    flow.cli("ledger", "export", "-f", "jsonl", "--output", str(out), "--status", "opted_out")
    assert [json.loads(x)["chat_id"] for x in out.read_text().splitlines()] == [flow.opted_out]
    flow.cli("ledger", "export", "--format", "xml", rc=2)


def test_chat_pause_resume_and_share_now(flow: Flow) -> None:
    chat = next(c for c, ln in flow.eligible.items() if ln == L1)
    paused = flow.json("chat", "pause", chat)
    assert (paused["before"], paused["status"], paused["next_share_at"]) == (
        "active",
        "paused",
        None,
    )
    assert flow.show(chat)["chat"]["status"] == "paused"
    assert flow.json("chat", "pause", chat)["changed"] is False
    resumed = flow.json("chat", "resume", chat)
    assert resumed["status"] == "active"
    next_at = _at(resumed["next_share_at"]).astimezone(NY)
    assert next_at.hour == 9 and next_at.date() > DAY1_0930.astimezone(NY).date()
    flow.cli("chat", "pause", flow.opted_out, rc=1)
    flow.cli("chat", "resume", "no-such-chat", rc=1)

    before = len(flow.stack.sim.control("GET", "shares", params={"chat_id": chat})["shares"])  # type: ignore[union-attr]
    refused = flow.json("share", "now", chat, rc=1)
    assert (refused["refused"], refused["outcome"]) == ("already_shared_today", None)
    # Linq allows one share per chat per 5 minutes; the operator forces one 6 minutes on.
    flow.stack.set_time(DAY1_0930 + timedelta(minutes=6))
    forced = flow.json("share", "now", chat, "--force")
    assert (forced["outcome"], forced["forced"]) == ("shared", True)
    assert flow.stack.sim is not None
    after = flow.stack.sim.control("GET", "shares", params={"chat_id": chat})["shares"]
    assert len(after) == before + 1
    attempts = flow.show(chat)["attempts"]
    assert [a["forced"] for a in attempts if a["outcome"] == "shared"] == [False, True]
    assert attempts[-1]["instance"].startswith("cli-")
    assert flow.json("share", "now", flow.opted_out, "--force", rc=1)["refused"] == "opted_out"
    assert flow.json("share", "now", flow.sms, rc=1)["refused"] == "not_imessage"
    # Each intervention is in the chat's trail, latest first, with what came of it.
    trail = [(a["action"], a["result"]) for a in flow.show(chat)["actions"]]
    assert trail == [
        ("share.now", "shared (forced)"),
        ("share.now", "refused: already_shared_today"),
        ("chat.resume", "paused -> active"),
        ("chat.pause", "already paused"),
        ("chat.pause", "active -> paused"),
    ]


def test_doctor(flow: Flow) -> None:
    report = flow.json("doctor")
    assert report["ok"] is True
    verdicts = {c["check"]: c["status"] for c in report["checks"]}
    assert verdicts == {
        "config": "ok",
        "database": "ok",
        "schema": "ok",
        "token": "ok",
        f"card {L1}": "ok",
        f"card {L2}": "ok",
        "webhook secret": "ok",
        "clock": "ok",
        # The running daemon's measure of the webhook signer's clock.
        "webhook clock": "ok",
    }
    text = flow.cli("doctor")
    assert len(text.strip().splitlines()) == 10, "one line per check, then the verdict"

    bad = flow.json("doctor", rc=1, env={**flow.daemon.env, "LINQ_API_KEY": "not-the-token"})
    assert {c["check"]: c["status"] for c in bad["checks"]}["token"] == "fail"

    # A clock 10 minutes off Linq's (here: its own clock file) fails the clock check.
    skewed = flow.stack.workdir / "skewed-clock"
    set_clock_file(skewed, DAY1_0930 + timedelta(minutes=20))
    off = flow.json("doctor", rc=1, env={**flow.daemon.env, CLOCK_FILE_ENV: str(skewed)})
    clock_check = next(c for c in off["checks"] if c["check"] == "clock")
    assert clock_check["status"] == "fail"
    assert "Linq's clock" in clock_check["detail"]


def test_plan_is_checked_against_the_next_day(flow: Flow) -> None:
    forecast = flow.json("plan", "--hours", "24", "--chats", "100")
    tomorrow_9 = (DAY1_0800_NY + timedelta(days=1, hours=1)).replace(minute=0)
    assert forecast["due_now"] == 0 and forecast["in_flight"] == 0
    per_line = {entry["line"]: entry for entry in forecast["lines"]}
    assert set(per_line) == {L1, L2}
    assert (per_line[L1]["total"], per_line[L2]["total"]) == (4, 2)
    for entry in per_line.values():
        assert [_at(h["hour"]) for h in entry["hours"]] == [tomorrow_9]
    predicted = {p["chat_id"]: _at(p["at"]) for p in forecast["chats"]}
    assert set(predicted) == set(flow.eligible)
    assert "shares forecast" in flow.cli("plan", "--hours", "24")

    # The next day happens; every share lands in the hour and line the plan said.
    flow.stack.set_time(DAY2_0930)
    day2 = DAY2_0930 - timedelta(hours=2)

    def day2_shares() -> list[dict[str, Any]]:
        return [s for s in flow.stack.shares() if _at(s["at"]) >= day2]

    wait_for(
        lambda: {s["chat_id"] for s in day2_shares()} >= set(flow.eligible),
        what="day 2 shares",
    )
    time.sleep(1.0)
    actual = Counter(
        (flow.eligible[s["chat_id"]], _at(s["at"]).replace(minute=0, second=0, microsecond=0))
        for s in day2_shares()
    )
    expected = Counter(
        {
            (entry["line"], _at(h["hour"])): h["shares"]
            for entry in forecast["lines"]
            for h in entry["hours"]
        }
    )
    assert actual == expected


def test_logs_are_json_with_ids_and_never_show_secrets(flow: Flow) -> None:
    assert flow.daemon.stop() == 0
    text = flow.daemon.logs()
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            event = json.loads(line)
        except ValueError:
            pytest.fail(f"log line {number} is not JSON: {line[:200]}")
        assert isinstance(event, dict) and event.get("event"), f"line {number} has no event"
        events.append(event)
    names = Counter(e["event"] for e in events)
    assert names["daemon.started"] == 1 and names["daemon.stopped"] == 1
    assert names["share.succeeded"] >= 12
    share_events = [e for e in events if str(e["event"]).startswith("share.") and "chat_id" in e]
    assert {e["event"] for e in share_events} >= {"share.succeeded"}
    for e in share_events:
        assert e["chat_id"] and e["line"] in (L1, L2) and e["pass_id"], e
    assert any(e["event"] == "pass.finished" and e.get("pass_id") for e in events)
    everything = [text, flow.stack.sim.log_path.read_text(), *flow.outputs]  # type: ignore[union-attr]
    for blob in everything:
        assert API_KEY not in blob
        assert WEBHOOK_SECRET not in blob
