"""SIGHUP reloads the schedule file of a running daemon process."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from scheduler.demo.processes import DaemonProcess, free_port, write_schedule
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, ledger_chats, wait_for

pytestmark = pytest.mark.e2e
NY = ZoneInfo("America/New_York")
L1 = "+14155550100"
L2 = "+14155550111"


def _events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    found = []
    for line in daemon.logs().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == name:
            found.append(event)
    return found


def _shared_on(stack: Stack, day: datetime) -> set[str]:
    date = day.astimezone(NY).date()
    return {
        s["chat_id"]
        for s in stack.shares()
        if datetime.fromisoformat(s["at"].replace("Z", "+00:00")).astimezone(NY).date() == date
    }


def test_sighup_applies_a_valid_schedule_and_rejects_a_broken_one(stack: Stack) -> None:
    port = free_port()
    stack.start_sim(port, activation_delay=0.2)
    # The ledger comes from the environment (as under compose); the file names another one,
    # and a reload must keep the override.
    stack.env["SHARE_SCHEDULER_DATABASE_URL"] = stack.database_url
    decoy = stack.workdir / "not-this-ledger.db"
    base = {"lines": [{"number": L1}], "database": {"url": f"sqlite:///{decoy}"}}
    daemon = stack.add_daemon(base, port=port)
    daemon.start()
    stack.create_card(L1)
    chats = {stack.create_chat(L1, [f"+1212555{i:04d}"]) for i in range(3)}
    stack.drain_webhooks()
    wait_for(lambda: len(ledger_chats(daemon)) == 3, what="3 chats learnt by webhook")

    day1_0830 = DAY1_0800_NY + timedelta(minutes=30)
    stack.set_time(day1_0830)
    time.sleep(1.5)  # passes at 08:30 with a 09:00 window: nothing shared
    assert stack.shares() == []

    # A valid change: the window opens at 08:00, a second line appears, passes run faster.
    wider = stack.schedule(
        port,
        {
            "lines": [{"number": L1}, {"number": L2, "timezone": "America/Chicago"}],
            "database": {"url": f"sqlite:///{decoy}"},
            "sharing": {"window": {"start": "08:00"}},
            "share_pass": {"interval": "200ms"},
        },
        "d0",
    )
    write_schedule(daemon.config_path, wider)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: _events(daemon, "config.reloaded"), what="config.reloaded")
    wait_for(lambda: chats <= _shared_on(stack, day1_0830), what="shares at 08:30")
    stats = json.loads(
        _cli(daemon, "ledger", "stats", "--json"),
    )
    assert {s["line"] for s in stats["lines"]} >= {L1, L2}, "the new line is in the ledger"
    assert _events(daemon, "config.restart_required") == []

    # A broken file: rejected, its problems logged, the daemon running on the old schedule.
    daemon.config_path.write_text(
        "sharing:\n  timezone: Nowhere/Land\n  window: {start: '08:00', end: '08:00'}\nbogus: 1\n"
    )
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: _events(daemon, "config.reload_rejected"), what="config.reload_rejected")
    (rejected,) = _events(daemon, "config.reload_rejected")
    problems = " | ".join(rejected["problems"])
    assert "sharing.timezone" in problems and "bogus: unknown key" in problems
    assert "sharing.window" in problems
    assert len(_events(daemon, "config.reloaded")) == 1
    assert daemon.proc is not None and daemon.proc.poll() is None, "still running"
    assert httpx.get(f"{daemon.base_url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{daemon.base_url}/readyz", timeout=5).status_code == 200

    # The next day at 08:30 the kept (wider) window still applies.
    day2_0830 = day1_0830 + timedelta(days=1)
    stack.set_time(day2_0830)
    wait_for(lambda: chats <= _shared_on(stack, day2_0830), what="day 2 shares at 08:30")

    # Keys bound at start are reported, not silently ignored.
    write_schedule(daemon.config_path, {**wider, "instance_id": "renamed"})
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: _events(daemon, "config.restart_required"), what="restart_required")
    assert _events(daemon, "config.restart_required")[0]["keys"] == ["instance_id"]

    assert daemon.stop() == 0
    per_day = [len(_shared_on(stack, d)) for d in (day1_0830, day2_0830)]
    assert per_day == [3, 3]
    assert len(stack.shares()) == 6, "never twice a day"
    assert not decoy.exists()


def _cli(daemon: DaemonProcess, *args: str) -> str:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "scheduler", *args, "--config", str(daemon.config_path)],
        capture_output=True,
        text=True,
        env=daemon.env,
        check=True,
    )
    return out.stdout


def test_a_reload_reads_the_file_off_the_event_loop_and_a_bad_one_changes_nothing(
    stack: Stack,
) -> None:
    """SIGHUP while the file cannot be read yet (a FIFO nobody writes to): the daemon goes on
    answering and sharing; then the file turns out to be an alias bomb and is rejected."""
    import os
    import threading

    from tests.unit.test_config_hostile import BILLION_LAUGHS

    port = free_port()
    stack.start_sim(port, activation_delay=0.2)
    daemon = stack.add_daemon({"lines": [{"number": L1}]}, port=port)
    daemon.start()
    stack.create_card(L1)
    first = stack.create_chat(L1, ["+12125550001"])
    stack.drain_webhooks()
    wait_for(lambda: len(ledger_chats(daemon)) == 1, what="the chat learnt by webhook")

    os.unlink(daemon.config_path)
    os.mkfifo(daemon.config_path)
    daemon.signal(signal.SIGHUP)
    slowest = 0.0
    for _ in range(10):
        started = time.monotonic()
        answer = httpx.get(f"{daemon.base_url}/healthz", timeout=1)
        slowest = max(slowest, time.monotonic() - started)
        assert answer.status_code == 200
        time.sleep(0.2)
    print(f"slowest /healthz while the reload waits on the file: {slowest * 1000:.0f} ms")

    # Shares go on meanwhile: the window opens and the chat is shared.
    stack.set_time(DAY1_0800_NY + timedelta(hours=2))
    wait_for(lambda: first in {s["chat_id"] for s in stack.shares()}, what="the share")

    def feed() -> None:
        with open(daemon.config_path, "w") as fifo:
            fifo.write(BILLION_LAUGHS)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    wait_for(lambda: _events(daemon, "config.reload_rejected"), what="config.reload_rejected")
    writer.join(timeout=10)
    (rejected,) = _events(daemon, "config.reload_rejected")
    assert "aliases" in " ".join(rejected["problems"])
    assert _events(daemon, "config.reloaded") == []
    assert httpx.get(f"{daemon.base_url}/healthz", timeout=1).status_code == 200

    # The old schedule still shares new chats.
    second = stack.create_chat(L1, ["+12125550002"])
    stack.drain_webhooks()
    wait_for(lambda: second in {s["chat_id"] for s in stack.shares()}, what="a later share")
    assert daemon.stop() == 0
