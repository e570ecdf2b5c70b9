"""A SIGKILL mid-pass costs at most the calls in flight: no claim is taken ahead of a call.

Every claim left open by a kill is resolved as ambiguous and counts as shared (a missed day for
a chat whose call never went out), so the pass claims only for workers about to call.
"""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter
from datetime import timedelta

import pytest

from bench.common import fill_ledger
from scheduler.demo.processes import free_port
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, wait_for

pytestmark = pytest.mark.e2e
LINE = "+14155550100"
CHATS = 300
CONCURRENCY = 4
OPEN = DAY1_0800_NY + timedelta(hours=1, minutes=30)  # 09:30 in New York


OPEN_CLAIMS = "SELECT count(*) FROM chats WHERE claim_attempt_id IS NOT NULL"
# A claim's intent is durable on its chat (who, the attempt id, since when), with no attempt
# row until the outcome: this counts the open claims that break either half.
BROKEN_INTENTS = (
    "SELECT count(*) FROM chats c WHERE c.claim_attempt_id IS NOT NULL"
    " AND (c.claim_started_at IS NULL OR c.claimed_by IS NULL"
    " OR EXISTS (SELECT 1 FROM share_attempts a WHERE a.id = c.claim_attempt_id))"
)


def _count(stack: Stack, statement: str) -> int:
    with sqlite3.connect(stack.workdir / "ledger.db", timeout=30) as db:
        return int(db.execute(statement).fetchone()[0])


def _wait_for_shares(stack: Stack, count: int) -> None:
    wait_for(lambda: len(stack.shares()) >= count, timeout=60, what=f"{count} shares")


@pytest.mark.timeout(300)
def test_a_kill_mid_pass_misses_no_more_chats_than_calls_in_flight(stack: Stack) -> None:
    port = free_port()
    # Slow calls: a pass that claimed ahead would hold many unsent claims at any moment.
    stack.start_sim(port, activation_delay=0, latency_ms=250)
    stack.create_card(LINE)
    assert stack.sim is not None
    ids: list[str] = stack.sim.control(
        "POST", "seed", json={"from": LINE, "count": CHATS, "webhooks": False}
    )["chat_ids"]
    stack.set_time(OPEN)
    daemon = stack.add_daemon(
        {
            "share_pass": {"concurrency": CONCURRENCY, "batch_size": 100, "lease": "20s"},
            "cards": {"check_interval": "1h"},
            "backfill": {"enabled": False},
        },
        port=port,
    )
    fill_ledger(stack.database_url, ids, set(ids), OPEN)
    kills = 3
    for kill in range(kills):
        daemon.start()
        _wait_for_shares(stack, len(stack.shares()) + 2 * CONCURRENCY)
        daemon.signal(signal.SIGKILL)
        daemon.wait()
        print(f"kill {kill}: {_count(stack, OPEN_CLAIMS)} claims left open")
        assert _count(stack, BROKEN_INTENTS) == 0
    left_open = _count(stack, OPEN_CLAIMS)
    assert left_open > 0, "the kills cut calls off mid-flight"
    # Past the lease, the restarted daemon resolves what the kills left open, then shares
    # every other chat.
    stack.set_time(OPEN + timedelta(seconds=25))
    daemon.start()
    wait_for(
        lambda: _count(stack, "SELECT count(*) FROM chats WHERE share_count = 0") == 0,
        timeout=120,
        what="every chat shared or counted as shared",
    )
    assert daemon.stop() == 0
    per_chat = Counter(s["chat_id"] for s in stack.shares())
    assert max(per_chat.values()) == 1, "a chat was shared twice"
    with sqlite3.connect(stack.workdir / "ledger.db") as db:
        counted = {row[0] for row in db.execute("SELECT chat_id FROM chats WHERE share_count > 0")}
    missed = len(counted - set(per_chat))
    print(f"{missed} chat-days missed over {kills} kills")
    # Each kill costs at most the calls it cut off; outcomes buffered for the ledger were sent.
    assert missed <= kills * CONCURRENCY
    # Every attempt audited by exactly one row: one per chat (each shared once or counted as
    # shared), the claims the kills left open written as ambiguous, none left open.
    with sqlite3.connect(stack.workdir / "ledger.db") as db:
        rows = Counter(db.execute("SELECT chat_id FROM share_attempts"))
        outcomes = Counter(row[0] for row in db.execute("SELECT outcome FROM share_attempts"))
    assert len(rows) == CHATS and max(rows.values()) == 1
    assert outcomes == {"shared": CHATS - left_open, "ambiguous": left_open}
