"""The daemon's scheduled backfill: chats whose webhooks never came are learnt from Linq."""

from __future__ import annotations

import json
import signal

import pytest

from scheduler.demo.processes import free_port
from tests.e2e.harness import Stack, ledger_chats, wait_for

pytestmark = pytest.mark.e2e
L1 = "+14155550100"
L2 = "+14155550111"


def test_a_daemon_learns_chats_without_webhooks_from_its_backfill_job(stack: Stack) -> None:
    # No webhook URL: the simulator's traffic reaches the daemon only through backfill.
    sim = stack.start_sim(None)
    created = sim.control("POST", "seed", json={"from": L1, "count": 300})["chat_ids"]
    created += sim.control("POST", "seed", json={"from": L2, "count": 50, "service": "SMS"})[
        "chat_ids"
    ]
    daemon = stack.add_daemon(
        {
            "lines": [{"number": L1}, {"number": L2}],
            "backfill": {"at_start": True, "interval": "1h"},
        },
        port=free_port(),
    )
    daemon.start()
    wait_for(lambda: len(ledger_chats(daemon)) == 350, timeout=60, what="350 chats backfilled")
    rows = {c["chat_id"]: c for c in ledger_chats(daemon)}
    assert set(rows) == set(created)
    assert {rows[c]["line"] for c in created[:300]} == {L1}
    assert {rows[c]["service"] for c in created[300:]} == {"SMS"}
    assert all(rows[c]["first_outbound_at"] is not None for c in created)
    wait_for(lambda: "backfill.finished" in daemon.logs(), what="the run's summary")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    finished = [
        json.loads(line)
        for line in daemon.logs().splitlines()
        if line.startswith("{") and '"backfill.finished"' in line
    ]
    assert finished[0]["created"] == 350 and finished[0]["ok"] is True
