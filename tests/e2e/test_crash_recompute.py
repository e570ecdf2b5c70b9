"""A kill or a stop while a line's chats are rescheduled never strands a chat.

When a line's card turns active, its chats (never due while it was inactive) get their next
share computed, in batches. A daemon killed (SIGKILL) or stopped (SIGTERM) part way must not
leave the rest without a next share: the restarted daemon finishes the job, although the line
already reads active. A SIGTERM exits 0 within the grace period, on SQLite too.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from bench.common import fill_ledger, ledger_sql
from scheduler.demo.processes import DaemonProcess, free_port
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, wait_for

pytestmark = pytest.mark.e2e
LINE = "+14155550100"
CHATS = 12_000
GRACE_SECONDS = 5


def _stranded(url: str) -> int:
    return int(ledger_sql(url, "SELECT count(*) FROM chats WHERE next_share_at IS NULL")[0][0])


def _card_inactive_again(url: str) -> None:
    """The ledger as it was while the line's card was not active: no chat has a next share."""
    ledger_sql(url, f"UPDATE lines SET card_state = 'absent' WHERE number = '{LINE}'")
    ledger_sql(url, "UPDATE chats SET next_share_at = NULL")


def _interrupt(url: str, daemon: DaemonProcess, sig: int, after: int) -> int:
    """Start the daemon; once ``after`` chats have a next share (the line reads active when
    ``after`` is 0), send ``sig``. Return the exit code; for SIGKILL, -9."""
    daemon.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if after == 0:
            active = ledger_sql(url, f"SELECT card_state FROM lines WHERE number = '{LINE}'")
            if active and active[0][0] == "active":
                break
        elif CHATS - _stranded(url) >= after:
            break
        time.sleep(0.01)
    else:
        raise AssertionError(f"the line's chats were not being rescheduled ({after})")
    daemon.signal(sig)
    started = time.monotonic()
    code = daemon.wait(GRACE_SECONDS + 25)
    if sig == signal.SIGTERM:
        # Within the grace period plus the time a clean exit takes under load.
        assert time.monotonic() - started < GRACE_SECONDS + 10, "SIGTERM took too long"
    return code


@pytest.mark.timeout(900)
def test_kill_or_stop_while_rescheduling_strands_no_chat(ledger_url: str, tmp_path: Any) -> None:
    stack = Stack(tmp_path, DAY1_0800_NY, database_url=ledger_url)
    try:
        _run(stack, ledger_url)
    finally:
        stack.stop()
        for daemon in stack.daemons:
            print(f"--- {daemon.log_path.name} (tail) ---")
            print("\n".join(daemon.logs().splitlines()[-30:]))


def _run(stack: Stack, url: str) -> None:
    port = free_port()
    stack.start_sim(port, activation_delay=0)
    stack.create_card(LINE)
    assert stack.sim is not None
    ids: list[str] = stack.sim.control(
        "POST", "seed", json={"from": LINE, "count": CHATS, "webhooks": False}
    )["chat_ids"]
    fill_ledger(url, ids, set(ids), DAY1_0800_NY)
    daemon = stack.add_daemon(
        {
            "share_pass": {"shutdown_grace": f"{GRACE_SECONDS}s"},
            "cards": {"check_interval": "1h"},
            "backfill": {"enabled": False},
        },
        port=port,
    )
    # 08:00 in New York: outside the window, so every chat's next share is 09:00 today and
    # nothing is shared until the end, when the clock moves into the window.
    cases = [
        (signal.SIGKILL, 0),
        (signal.SIGKILL, CHATS * 2 // 5),
        (signal.SIGTERM, CHATS // 5),
        (signal.SIGTERM, CHATS * 7 // 10),
    ]
    stranded_by_interruptions = 0
    for sig, after in cases:
        _card_inactive_again(url)
        code = _interrupt(url, daemon, sig, after)
        if sig == signal.SIGTERM:
            assert code == 0, f"SIGTERM during the reschedule exited {code}"
        stranded = _stranded(url)
        stranded_by_interruptions += stranded
        print(f"{signal.Signals(sig).name} after {after}: {stranded} chats without a next share")
        daemon.start()
        wait_for(
            lambda: _stranded(url) == 0,
            timeout=60,
            what=f"every chat with a next share after {signal.Signals(sig).name} at {after}",
        )
        assert daemon.stop(timeout=GRACE_SECONDS + 25) == 0

    # The signals did land mid-way (else this test proves nothing).
    assert stranded_by_interruptions > 0

    # Inside the window: every chat is shared, once.
    stack.set_time(DAY1_0800_NY + timedelta(hours=1, minutes=30))
    daemon.start()
    wait_for(lambda: len(stack.shares()) >= CHATS, timeout=300, what=f"{CHATS} chats shared")
    assert daemon.stop(timeout=GRACE_SECONDS + 25) == 0
    per_chat = Counter(s["chat_id"] for s in stack.shares())
    assert set(per_chat) == set(ids)
    assert max(per_chat.values()) == 1
