"""Several daemons on one PostgreSQL ledger share the work and never share a chat twice."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa

from scheduler.demo.processes import free_port
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chats
from scheduler.ledger.models import attempts_table
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, running_stack, wait_for
from tests.factories import add_chats_named

pytestmark = pytest.mark.e2e
NY = ZoneInfo("America/New_York")
LINE = "+14155550100"
OPEN = DAY1_0800_NY + timedelta(hours=1, minutes=30)  # 09:30 local


@pytest.fixture
def pg_stack(tmp_path: Path, pg_url: str) -> Iterator[Stack]:
    with running_stack(tmp_path, DAY1_0800_NY, database_url=pg_url, log_tail=30) as s:
        yield s


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _insert_chats(url: str, ids: list[str]) -> None:
    ledger = Ledger(create_engine(url, pool_size=1))
    try:
        first = DAY1_0800_NY - timedelta(hours=2)
        await add_chats_named(ledger, LINE, ids, now=first, first_outbound_at=first)
    finally:
        await ledger.dispose()


async def _ledger_facts(url: str) -> tuple[dict[str, int], Counter[str], list[str]]:
    ledger = Ledger(create_engine(url, pool_size=1))
    try:
        async with ledger.read() as conn:
            shared = {
                r.chat_id: r.share_count
                for r in await conn.execute(sa.select(chats.c.chat_id, chats.c.share_count))
            }
            per_instance = Counter(
                {
                    r.instance: r.n
                    for r in await conn.execute(
                        sa.select(attempts_table.c.instance, sa.func.count().label("n"))
                        .where(attempts_table.c.outcome == "shared")
                        .group_by(attempts_table.c.instance)
                    )
                }
            )
            ambiguous = [
                r.chat_id
                for r in await conn.execute(
                    sa.select(attempts_table.c.chat_id).where(
                        attempts_table.c.outcome == "ambiguous"
                    )
                )
            ]
        return shared, per_instance, ambiguous
    finally:
        await ledger.dispose()


def _setup(stack: Stack, count: int, replicas: int, latency_ms: float) -> list[str]:
    port = free_port()
    stack.start_sim(port, activation_delay=0.2, latency_ms=latency_ms)
    stack.create_card(LINE)
    assert stack.sim is not None
    ids: list[str] = stack.sim.control(
        "POST", "seed", json={"from": LINE, "count": count, "webhooks": False}
    )["chat_ids"]
    overrides = {"share_pass": {"batch_size": 100, "concurrency": 8, "lease": "20s"}}
    for i in range(replicas):
        stack.add_daemon(overrides, port=port if i == 0 else None)
    _run(_insert_chats(stack.database_url, ids))
    for daemon in stack.daemons:
        daemon.start()
    return ids


def _shares_per_day(stack: Stack) -> Counter[tuple[str, Any]]:
    return Counter(
        (s["chat_id"], datetime.fromisoformat(s["at"].replace("Z", "+00:00")).astimezone(NY).date())
        for s in stack.shares()
    )


def test_three_replicas_share_5000_chats_exactly_once(pg_stack: Stack) -> None:
    ids = _setup(pg_stack, 5000, 3, latency_ms=20)
    time.sleep(1.0)
    pg_stack.set_time(OPEN)
    wait_for(lambda: len(pg_stack.shares()) >= 5000, timeout=120, what="5000 shares")
    time.sleep(2.0)
    per_day = _shares_per_day(pg_stack)
    assert len(per_day) == 5000
    assert set(per_day.values()) == {1}
    assert {cid for cid, _ in per_day} == set(ids)
    shared, per_instance, ambiguous = _run(_ledger_facts(pg_stack.database_url))
    assert set(shared.values()) == {1}
    assert ambiguous == []
    print(f"shares per replica: {dict(per_instance)}")
    assert set(per_instance) == {"d0", "d1", "d2"}
    assert min(per_instance.values()) >= 500, f"work not spread: {dict(per_instance)}"
    for daemon in pg_stack.daemons:
        assert daemon.stop() == 0


def test_replica_killed_mid_pass_never_double_shares(pg_stack: Stack) -> None:
    ids = _setup(pg_stack, 5000, 3, latency_ms=30)
    time.sleep(1.0)
    pg_stack.set_time(OPEN)
    wait_for(lambda: len(pg_stack.shares()) >= 1000, timeout=60, what="the pass under way")
    victim = pg_stack.daemons[1]
    victim.signal(signal.SIGKILL)
    victim.wait()
    victim.start()
    pg_stack.set_time(OPEN + timedelta(seconds=25))  # past the lease of the dead claims
    shared: dict[str, int] = {}
    ambiguous: list[str] = []

    def all_counted() -> bool:
        nonlocal shared, ambiguous
        shared, _, ambiguous = _run(_ledger_facts(pg_stack.database_url))
        return all(n == 1 for n in shared.values())

    wait_for(all_counted, timeout=120, what="every chat counted once")
    time.sleep(1.5)
    per_day = _shares_per_day(pg_stack)
    assert max(per_day.values()) == 1, "a chat was shared twice"
    assert {cid for cid, _ in per_day} <= set(ids)
    # Only the victim's claims can be lost: in flight (concurrency 8) plus queued (about a
    # second of calls, never more than batch_size 100).
    assert len(per_day) >= 5000 - (100 + 8)
    assert ambiguous, "the killed replica's claims were not resolved as ambiguous"
    # Visible from the CLI.
    daemon = pg_stack.daemons[0]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "scheduler",
            "ledger",
            "show",
            ambiguous[0],
            "--json",
            "--config",
            str(daemon.config_path),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=daemon.env,
    )
    shown = json.loads(out.stdout)
    assert "ambiguous" in [a["outcome"] for a in shown["attempts"]]
    assert shown["chat"]["share_count"] == 1
    for d in pg_stack.daemons:
        assert d.stop() == 0


def _ready(daemon: Any) -> int:
    try:
        return httpx.get(f"{daemon.base_url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_postgres_restart_mid_pass(pg_stack: Stack) -> None:
    if not Path("/etc/postgresql").exists():
        pytest.fail("this test restarts the local PostgreSQL cluster and needs pg_ctlcluster")
    ids = _setup(pg_stack, 1500, 1, latency_ms=20)
    daemon = pg_stack.daemons[0]
    wait_for(lambda: _ready(daemon) == 200, what="/readyz 200")
    pg_stack.set_time(OPEN)
    wait_for(lambda: len(pg_stack.shares()) >= 200, timeout=60, what="the pass under way")
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop", "-m", "fast"],
        check=True,
        capture_output=True,
    )
    try:
        wait_for(lambda: _ready(daemon) == 503, timeout=30, what="/readyz 503")
        body = httpx.get(f"{daemon.base_url}/readyz", timeout=5).json()
        assert body["checks"]["ledger"].startswith("unavailable")
        assert httpx.get(f"{daemon.base_url}/healthz", timeout=5).status_code == 200
    finally:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=True,
            capture_output=True,
        )
    wait_for(lambda: _ready(daemon) == 200, timeout=60, what="/readyz back to 200")
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon died"
    pg_stack.set_time(OPEN + timedelta(seconds=25))  # let any claim cut off by the outage expire
    wait_for(
        lambda: all(n == 1 for n in _run(_ledger_facts(pg_stack.database_url))[0].values()),
        timeout=120,
        what="the pass completes after the outage",
    )
    per_day = _shares_per_day(pg_stack)
    assert max(per_day.values()) == 1
    assert len(per_day) >= len(ids) - 100
    assert daemon.stop() == 0
