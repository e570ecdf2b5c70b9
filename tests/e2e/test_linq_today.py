"""Today's Linq with the real daemon and simulator processes: account-wide opt-outs, blocked
handles, ineligible lines, and the card lifecycle (pending cards are never PATCHed)."""

from __future__ import annotations

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

from scheduler.demo.processes import DaemonProcess, SimProcess, free_port, write_schedule
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, ledger_chats, wait_for

pytestmark = pytest.mark.e2e
NY = ZoneInfo("America/New_York")
L1 = "+14155550100"
L2 = "+14155550111"
ALICE = "+12125550101"
BOB = "+12125550102"
CAROL = "+12125550103"
DAVE = "+12125550104"
ACTIVATION = timedelta(seconds=6)  # the simulator's card activation delay, in the card test
OPENS = DAY1_0800_NY + timedelta(hours=1, minutes=30)  # 09:30 local, inside the window


def _cli(daemon: DaemonProcess, *args: str, check: bool = True) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "scheduler", *args, "-c", str(daemon.config_path)],
        check=check,
        capture_output=True,
        text=True,
        env=daemon.env,
    )
    return out.stdout


def _status(daemon: DaemonProcess) -> dict[str, str]:
    return {c["chat_id"]: c["status"] for c in ledger_chats(daemon)}


def _local(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(NY)


def _shared_today(stack: Stack) -> Counter[str]:
    today = OPENS.astimezone(NY).date()
    return Counter(s["chat_id"] for s in stack.shares() if _local(s["at"]).date() == today)


def _codes(stack: Stack, chat_id: str) -> list[int | None]:
    return [c["code"] for c in stack.calls() if c["chat_id"] == chat_id]


def _inbound(stack: Stack, chat_id: str, text: str) -> dict[str, Any]:
    assert stack.sim is not None
    result: dict[str, Any] = stack.sim.control(
        "POST", f"chats/{chat_id}/inbound", json={"text": text}
    )
    return result


def _two_lines(stack: Stack) -> tuple[SimProcess, DaemonProcess]:
    """The simulator and a running daemon, with active cards on both lines."""
    port = free_port()
    sim = stack.start_sim(port, activation_delay=0.2)
    daemon = stack.add_daemon({"lines": [{"number": L1}, {"number": L2}]}, port=port)
    daemon.start()
    stack.create_card(L1)
    stack.create_card(L2, "Acme Sales")
    return sim, daemon


def test_opt_outs_and_blocks_hold_for_the_recipient_on_every_line(stack: Stack) -> None:
    sim, daemon = _two_lines(stack)
    alice1 = stack.create_chat(L1, [ALICE])
    alice2 = stack.create_chat(L2, [ALICE])
    bob1 = stack.create_chat(L1, [BOB])
    carol1 = stack.create_chat(L1, [CAROL])
    carol2 = stack.create_chat(L2, [CAROL])
    stack.drain_webhooks()
    wait_for(lambda: len(ledger_chats(daemon)) == 5, what="5 chats learnt by webhook")
    # Line 2 waits, so that only line 1's shares meet the opt-out and the block.
    _cli(daemon, "line", "pause", L2)

    # Alice writes STOP, and Carol is blocked, where the daemon cannot see it: only the
    # shares' answers tell (403/2024, 403/2026).
    sim.control("POST", "webhooks", json={"enabled": False})
    _inbound(stack, alice1, "stop")
    sim.control("POST", "blocked_handles", json={"handle": CAROL, "blocked": True})
    sim.control("POST", "webhooks", json={"enabled": True})

    stack.set_time(OPENS)
    wait_for(lambda: bob1 in _shared_today(stack), what="Bob's share")
    wait_for(lambda: _codes(stack, alice1) == [2024], what="Alice's share refused")
    wait_for(lambda: _codes(stack, carol1) == [2026], what="Carol's share refused")
    wait_for(
        lambda: _status(daemon)[alice2] == "opted_out" and _status(daemon)[carol2] == "blocked",
        what="the recipients' chats on line 2 follow",
    )
    _cli(daemon, "line", "resume", L2)
    time.sleep(1.5)  # passes go by: neither recipient is tried again, on either line
    for chat_id in (alice1, alice2, carol1, carol2):
        assert len(_codes(stack, chat_id)) <= 1, f"{chat_id} was tried again"
    assert _codes(stack, alice2) == [] and _codes(stack, carol2) == []

    # One inbound message from Alice, on line 2, opts her back in everywhere.
    _inbound(stack, alice2, "Actually, yes please")
    stack.drain_webhooks()
    wait_for(
        lambda: {alice1, alice2} <= set(_shared_today(stack)), what="Alice's chats shared today"
    )

    # Carol is unblocked at Linq: the list read at the daemon's start no longer has her.
    sim.control("POST", "blocked_handles", json={"handle": CAROL, "blocked": False})
    time.sleep(1.0)
    assert _status(daemon)[carol1] == "blocked", "only the blocked list unblocks"
    assert daemon.stop() == 0
    daemon.start()
    wait_for(
        lambda: {carol1, carol2} <= set(_shared_today(stack)), what="Carol's chats shared today"
    )
    time.sleep(1.0)

    shared = _shared_today(stack)
    # Nobody lost the day, nobody was shared twice.
    assert shared == dict.fromkeys([alice1, alice2, bob1, carol1, carol2], 1)
    assert _codes(stack, alice1) == [2024, None] and _codes(stack, alice2) == [None]
    assert _codes(stack, carol1) == [2026, None] and _codes(stack, carol2) == [None]
    assert daemon.stop() == 0
    logs = daemon.logs()
    assert '"blocked_handles.synced"' in logs


def test_an_ineligible_line_pauses_and_resumes_on_the_active_webhook(stack: Stack) -> None:
    sim, daemon = _two_lines(stack)
    on_l1 = [stack.create_chat(L1, [ALICE]), stack.create_chat(L1, [BOB])]
    on_l2 = [stack.create_chat(L2, [CAROL]), stack.create_chat(L2, [DAVE])]
    stack.drain_webhooks()
    wait_for(lambda: len(ledger_chats(daemon)) == 4, what="4 chats learnt by webhook")

    # Line 2 is flagged without the daemon hearing of it: its shares answer 403/2027.
    sim.control("POST", "webhooks", json={"enabled": False})
    sim.control("POST", f"lines/{L2}/status", json={"status": "FLAGGED"})
    sim.control("POST", "webhooks", json={"enabled": True})

    stack.set_time(OPENS)
    wait_for(lambda: set(on_l1) <= set(_shared_today(stack)), what="line 1 shares")
    wait_for(lambda: any(2027 in _codes(stack, c) for c in on_l2), what="a share refused with 2027")
    refused = sum(len(_codes(stack, c)) for c in on_l2)
    time.sleep(1.5)  # passes go by: the line waits for its probe (minutes away)
    assert sum(len(_codes(stack, c)) for c in on_l2) == refused
    cards = {row["line"]: row for row in json.loads(_cli(daemon, "cards", "status", "--json"))}
    assert cards[L2]["ineligible"] is True and cards[L1]["ineligible"] is False
    assert cards[L2]["paused"] is False  # Linq's pause, not the operator's
    assert "2027" in cards[L2]["ineligible_reason"]
    # Both chats were refused in one pass: one refusal of the line, the first backoff (5 min).
    probe_at = datetime.fromisoformat(cards[L2]["probe_at"])
    assert OPENS + timedelta(minutes=5) <= probe_at <= OPENS + timedelta(minutes=6)
    stats = json.loads(_cli(daemon, "ledger", "stats", "--json"))
    assert {s["line"]: s["ineligible"] for s in stats["lines"]} == {L1: False, L2: True}
    assert stats["totals"]["lines_ineligible"] == 1
    doctor = _cli(daemon, "doctor", check=False)
    assert f"line {L2}" in doctor and f"line {L1}" not in doctor

    # Linq reports the line ACTIVE again (phone_number.status_updated): sharing resumes today.
    sim.control("POST", f"lines/{L2}/status", json={"status": "ACTIVE"})
    stack.drain_webhooks()
    wait_for(lambda: set(on_l2) <= set(_shared_today(stack)), what="line 2 shares")
    time.sleep(1.0)
    assert _shared_today(stack) == dict.fromkeys([*on_l1, *on_l2], 1)
    for chat_id in on_l2:
        assert set(_codes(stack, chat_id)) <= {2027, None}
    assert daemon.stop() == 0
    logs = daemon.logs()
    assert '"line.ineligible"' in logs and '"line.eligible"' in logs


def test_a_card_changed_while_pending_is_patched_once_after_activation(stack: Stack) -> None:
    port = free_port()
    sim = stack.start_sim(port, activation_delay=ACTIVATION.total_seconds())
    cards = {"check_interval": "300ms", "activation_poll": "200ms"}

    def schedule(name: str) -> dict[str, Any]:
        return stack.schedule(
            port, {"lines": [{"number": L1, "card": {"first_name": name}}], "cards": cards}, "d0"
        )

    daemon = stack.add_daemon(
        {"lines": [{"number": L1, "card": {"first_name": "Acme"}}], "cards": cards}, port=port
    )
    daemon.start()

    def writes() -> list[dict[str, Any]]:
        calls = sim.control("GET", "cards/calls")["calls"]
        return [c for c in calls if c["method"] in ("POST", "PATCH")]

    wait_for(lambda: len(writes()) == 1, what="the card posted")
    seen_posted = time.monotonic()
    posted = writes()[0]
    assert (posted["method"], posted["status"]) == ("POST", 200)
    # Changed in the schedule while the card is pending (it activates 6 s after the POST).
    write_schedule(daemon.config_path, schedule("Acme Support"))
    daemon.signal(signal.SIGHUP)
    time.sleep(1.5)  # card checks every 300 ms go by while it is pending
    if time.monotonic() - seen_posted < ACTIVATION.total_seconds() - 0.5:
        assert [w["method"] for w in writes()] == ["POST"], "a pending card was written again"

    def patched() -> bool:
        return [w["method"] for w in writes()] == ["POST", "PATCH"]

    wait_for(patched, what="the change applied once the card is active")
    patch = writes()[1]
    activated_at = datetime.fromisoformat(posted["at"].replace("Z", "+00:00")) + ACTIVATION
    assert datetime.fromisoformat(patch["at"].replace("Z", "+00:00")) >= activated_at
    assert patch["status"] == 200
    # The PATCHed card activates; checks go by: nothing more to write.
    time.sleep(ACTIVATION.total_seconds() + 1)
    assert [w["method"] for w in writes()] == ["POST", "PATCH"]

    calls = sim.control("GET", "cards/calls")["calls"]
    assert not [c for c in calls if c["method"] != "GET" and c["code"] == 2012]
    # Never more than 3 writes in any 10 minutes (the budget).
    times = [datetime.fromisoformat(w["at"].replace("Z", "+00:00")) for w in writes()]
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + timedelta(minutes=10)) <= 3
    assert daemon.stop() == 0
