"""The real daemon and simulator over loopback HTTP, across three local days."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.demo.processes import free_port
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, ledger_chats, wait_for

pytestmark = pytest.mark.e2e
NY = ZoneInfo("America/New_York")
L1 = "+14155550100"
L2 = "+14155550111"


def _local(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(NY)


def _shared_on(stack: Stack, day: int) -> Counter[str]:
    date = (DAY1_0800_NY + timedelta(days=day)).astimezone(NY).date()
    return Counter(s["chat_id"] for s in stack.shares() if _local(s["at"]).date() == date)


def test_each_eligible_chat_is_shared_once_per_local_day(stack: Stack) -> None:
    port = free_port()
    stack.start_sim(port, activation_delay=1.0)
    daemon = stack.add_daemon(port=port)
    daemon.start()
    stack.create_card(L1)
    eligible = [stack.create_chat(L1, [f"+1212555{i:04d}"]) for i in range(6)]
    never = {
        "sms": stack.create_chat(L1, ["+12125550200"], service="SMS"),
        "rcs": stack.create_chat(L1, ["+12125550201"], service="RCS"),
        "group": stack.create_chat(L1, ["+12125550202", "+12125550203"]),
        "opted_out": stack.create_chat(L1, ["+12125550204"]),
    }
    assert stack.sim is not None
    stack.sim.control("POST", f"chats/{never['opted_out']}/inbound", json={"text": "STOP"})
    late = [stack.create_chat(L2, [f"+1212555{300 + i:04d}"]) for i in range(3)]
    stack.drain_webhooks()
    wait_for(lambda: len(ledger_chats(daemon)) == 13, what="13 chats learnt by webhook")
    opted = [c for c in ledger_chats(daemon) if c["chat_id"] == never["opted_out"]]
    assert opted[0]["status"] == "opted_out"

    time.sleep(1.5)  # several passes at 08:00 local: outside the window
    assert stack.shares() == []

    for day in range(3):
        stack.set_time(DAY1_0800_NY + timedelta(days=day, hours=1, minutes=30))  # 09:30 local
        wait_for(
            lambda d=day: set(eligible) <= set(_shared_on(stack, d)),
            what=f"day {day + 1} shares on line 1",
        )
        if day == 0:
            time.sleep(1.0)
            assert not set(late) & set(_shared_on(stack, 0)), "line 2 has no card yet"
            stack.create_card(L2, "Acme Support")
        wait_for(
            lambda d=day: set(late) <= set(_shared_on(stack, d)),
            what=f"day {day + 1} shares on line 2",
        )
        time.sleep(1.5)  # more passes: nothing more may happen today

    shares = stack.shares()
    per_day = Counter((s["chat_id"], _local(s["at"]).date()) for s in shares)
    assert set(per_day.values()) == {1}, "a chat was shared twice on one local day"
    per_chat = Counter(s["chat_id"] for s in shares)
    assert {c: per_chat[c] for c in eligible + late} == {c: 3 for c in eligible + late}
    assert not set(never.values()) & set(per_chat)
    for s in shares:
        local = _local(s["at"])
        assert 9 <= local.hour < 20, f"share outside the window at {local}"
    # Shares on line 2 only started after its card became active.
    first_late = min(_local(s["at"]) for s in shares if s["chat_id"] in late)
    last_l1_day1 = max(
        _local(s["at"]) for s in shares if s["chat_id"] in eligible and _local(s["at"]).day == 2
    )
    assert first_late > last_l1_day1

    assert daemon.stop() == 0
    logs = daemon.logs()
    assert "daemon.stopped" in logs
    assert "e2e-api-key-5f1c2d9a" not in logs
    assert "e2e-webhook-secret-77aa31" not in logs
