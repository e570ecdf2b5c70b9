"""Cards with the real daemon and simulator processes, on a clock the test moves."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler.demo.processes import DaemonProcess, free_port, write_schedule
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, ledger_chats, wait_for

pytestmark = pytest.mark.e2e
NY = ZoneInfo("America/New_York")
L1 = "+14155550100"  # declares its card: the daemon writes it
L2 = "+14155550111"  # declares none: observed only
CARDS = {"check_interval": "500ms", "activation_poll": "200ms"}


def _status(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "scheduler",
            "cards",
            "status",
            "-c",
            str(daemon.config_path),
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=daemon.env,
    )
    return {row["line"]: row for row in json.loads(out.stdout)}


def _local(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(NY)


def _shared_on(stack: Stack, day: int) -> set[str]:
    date = (DAY1_0800_NY + timedelta(days=day)).astimezone(NY).date()
    return {s["chat_id"] for s in stack.shares() if _local(s["at"]).date() == date}


def _chat(daemon: DaemonProcess, chat_id: str) -> dict[str, Any] | None:
    found = [c for c in ledger_chats(daemon) if c["chat_id"] == chat_id]
    return found[0] if found else None


def test_a_deleted_card_stops_its_line_and_sharing_restarts_once_it_is_back(
    stack: Stack,
) -> None:
    port = free_port()
    sim = stack.start_sim(port, activation_delay=1.0)
    daemon = stack.add_daemon(
        {
            "lines": [
                {"number": L1, "card": {"first_name": "Acme", "last_name": "Support"}},
                {"number": L2},
            ],
            "cards": CARDS,
        },
        port=port,
    )
    daemon.start()
    wait_for(lambda: _status(daemon)[L1]["active"], what="the daemon creates line 1's card")
    stack.create_card(L2, "Acme Sales")
    first = [stack.create_chat(L1, [f"+1212555{i:04d}"]) for i in range(3)]
    first += [stack.create_chat(L2, [f"+1212556{i:04d}"]) for i in range(3)]
    stack.drain_webhooks()
    wait_for(lambda: len(ledger_chats(daemon)) == 6, what="6 chats learnt by webhook")
    wait_for(lambda: _status(daemon)[L2]["active"], what="line 2's card seen active")
    stack.set_time(DAY1_0800_NY + timedelta(hours=1, minutes=30))  # 09:30 local
    wait_for(lambda: set(first) <= _shared_on(stack, 0), what="day 1 shares")

    # Line 2 declares no card: once its card is deleted, it stays stopped.
    sim.control("DELETE", f"cards/{L2}")
    wait_for(lambda: _status(daemon)[L2]["state"] == "absent", what="line 2's card seen gone")
    late2 = stack.create_chat(L2, ["+12125557000"])
    stack.drain_webhooks()
    wait_for(lambda: _chat(daemon, late2) is not None, what="the new chat of line 2")
    time.sleep(1.5)  # passes and card syncs go by
    assert not [c for c in stack.calls() if c["chat_id"] == late2], "a share was tried"
    chat = _chat(daemon, late2)
    assert chat is not None
    assert chat["next_share_at"] is None
    assert _status(daemon)[L2]["writes_last_10m"] == 0

    # Line 1 declares its card: the daemon creates it again, and sharing resumes.
    sim.control("DELETE", f"cards/{L1}")
    late1 = stack.create_chat(L1, ["+12125557001"])
    stack.drain_webhooks()
    wait_for(lambda: late1 in _shared_on(stack, 0), what="line 1's card back, new chat shared")
    line1 = _status(daemon)[L1]
    assert line1["writes_last_10m"] == 1  # the first creation was at 08:00, out of the window
    assert line1["active"] is True
    assert daemon.logs().count('"write": "create"') == 2

    # Line 2's card is created again elsewhere: its waiting chat is shared.
    stack.create_card(L2, "Acme Sales")
    wait_for(lambda: late2 in _shared_on(stack, 0), what="line 2's waiting chat shared")
    time.sleep(1.0)  # more passes: nothing more may happen today

    everyone = [*first, late1, late2]
    stack.set_time(DAY1_0800_NY + timedelta(days=1, hours=1, minutes=30))
    wait_for(lambda: set(everyone) <= _shared_on(stack, 1), what="day 2 shares")
    time.sleep(1.0)

    shares = stack.shares()
    per_day = Counter((s["chat_id"], _local(s["at"]).date()) for s in shares)
    assert set(per_day.values()) == {1}, "a chat was shared twice on one local day"
    assert Counter(s["chat_id"] for s in shares) == dict.fromkeys(everyone, 2)
    assert daemon.stop() == 0
    logs = daemon.logs()
    assert '"card.written"' in logs
    assert '"card.activated"' in logs


def test_a_share_refused_for_a_deleted_card_has_the_card_read_and_created_again_at_once(
    stack: Stack,
) -> None:
    # Card checks an hour apart, and no card webhooks: only the share's 2012 can tell.
    port = free_port()
    sim = stack.start_sim(port, activation_delay=1.0)
    daemon = stack.add_daemon(
        {
            "lines": [{"number": L1, "card": {"first_name": "Acme"}}],
            "cards": {"check_interval": "1h", "activation_poll": "200ms"},
        },
        port=port,
    )
    daemon.start()
    wait_for(lambda: _status(daemon)[L1]["active"], what="the daemon creates the card")
    first = stack.create_chat(L1, ["+12125550001"])
    stack.drain_webhooks()
    wait_for(lambda: _chat(daemon, first) is not None, what="the chat learnt by webhook")
    stack.set_time(DAY1_0800_NY + timedelta(hours=1, minutes=30))  # 09:30 local
    wait_for(lambda: first in _shared_on(stack, 0), what="the first share")

    sim.control("POST", "webhooks", json={"enabled": False})
    sim.control("DELETE", f"cards/{L1}")
    sim.control("POST", "webhooks", json={"enabled": True})
    late = stack.create_chat(L1, ["+12125550002"])
    stack.drain_webhooks()
    wait_for(lambda: late in _shared_on(stack, 0), what="the card back and the new chat shared")

    assert [c["code"] for c in stack.calls() if c["chat_id"] == late] == [2012, None]
    assert Counter(s["chat_id"] for s in stack.shares()) == {first: 1, late: 1}
    assert daemon.stop() == 0
    logs = daemon.logs()
    assert logs.count('"card.recheck_requested"') == 1
    assert logs.count('"write": "create"') == 2
    # The card job runs in its own context, not the pass's that asked for it.
    written = [ln for ln in logs.splitlines() if '"card.written"' in ln]
    assert len(written) == 2 and not any('"pass_id"' in ln for ln in written)


def _card_writes_seen(stack: Stack, number: str) -> int:
    """Writes Linq accepted, as told by its contact_card.created/updated webhooks."""
    assert stack.sim is not None
    stack.drain_webhooks()
    recent = stack.sim.control("GET", "webhooks")["recent"]
    kinds = ("contact_card.created", "contact_card.updated")
    return sum(1 for e in recent if e["key"] == number and e["event_type"] in kinds)


def test_five_rapid_card_changes_across_a_restart_stay_within_three_writes_per_ten_minutes(
    stack: Stack,
) -> None:
    port = free_port()
    stack.start_sim(port, activation_delay=0.5)

    def schedule(name: str) -> dict[str, Any]:
        return stack.schedule(
            port, {"lines": [{"number": L1, "card": {"first_name": name}}], "cards": CARDS}, "d0"
        )

    daemon = stack.add_daemon(
        {"lines": [{"number": L1, "card": {"first_name": "Acme 1"}}], "cards": CARDS}, port=port
    )
    daemon.start()

    def observed(name: str) -> bool:
        row = _status(daemon)[L1]
        return bool(row["observed"] and row["observed"]["first_name"] == name)

    wait_for(lambda: observed("Acme 1"), what="card created")
    for name in ("Acme 2", "Acme 3"):
        write_schedule(daemon.config_path, schedule(name))
        daemon.signal(signal.SIGHUP)
        wait_for(functools.partial(observed, name), what=f"card patched to {name}")
    # A restart, with a fourth change made while the daemon was down.
    assert daemon.stop() == 0
    write_schedule(daemon.config_path, schedule("Acme 4"))
    daemon.start()
    wait_for(lambda: _status(daemon)[L1]["desired"]["first_name"] == "Acme 4", what="restart")
    write_schedule(daemon.config_path, schedule("Acme 5"))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: _status(daemon)[L1]["desired"]["first_name"] == "Acme 5", what="reload")
    time.sleep(1.5)  # card syncs go by, every 500 ms: the budget is spent

    row = _status(daemon)[L1]
    assert row["observed"]["first_name"] == "Acme 3"
    assert row["writes_last_10m"] == 3
    assert row["plan"] == "wait_budget"
    assert row["pending_fields"] == ["first_name"]
    assert _card_writes_seen(stack, L1) == 3

    stack.set_time(DAY1_0800_NY + timedelta(minutes=10, seconds=5))
    wait_for(lambda: observed("Acme 5"), what="the last change written once the window frees")
    assert _card_writes_seen(stack, L1) == 4
    assert daemon.stop() == 0
    logs = daemon.logs()
    assert logs.count('"card.written"') == 4
    assert '"rate_limited"' not in logs
    assert '"card.write_failed"' not in logs
