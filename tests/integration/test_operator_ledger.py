"""Operator views of the ledger on SQLite and PostgreSQL: stats, export, pause/resume, plan."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from scheduler import plan as plan_module
from scheduler.core.status import CardState, ChatStatus
from scheduler.errors import NotFound
from scheduler.ledger import queries
from scheduler.ledger.chat_ops import ChatStateError, set_chat_paused
from scheduler.ledger.claims import attempts, claim_batch
from scheduler.ledger.engine import Ledger
from scheduler.ledger.export import EXPORT_COLUMNS, export_chats
from scheduler.ledger.facts import chats
from scheduler.ledger.recompute import recompute_chats
from scheduler.ledger.stats import ledger_stats
from scheduler.plan import forecast
from tests.factories import add_chats, add_line, chat_row, policy

NY = ZoneInfo("America/New_York")
L1 = "+14155550100"
L2 = "+14155550111"
# Tuesday 2026-03-03, 07:00 in New York: two hours before the 09:00-20:00 window opens.
NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
FIRST_OUT = NOW - timedelta(days=3)


def ny_policy() -> Any:
    return policy(timezone="America/New_York", window_start=time(9), window_end=time(20))


async def add_attempt(
    ledger: Ledger, chat_id: str, line: str | None, outcome: str, at: datetime, **extra: Any
) -> None:
    async with ledger.write() as conn:
        await conn.execute(
            sa.insert(attempts).values(
                chat_id=chat_id,
                line=line,
                started_at=at,
                finished_at=at + timedelta(seconds=1),
                outcome=outcome,
                instance="test",
                tries=1,
                **extra,
            )
        )


async def set_status(ledger: Ledger, chat_id: str, status: str) -> None:
    async with ledger.write() as conn:
        await conn.execute(
            sa.update(chats)
            .where(chats.c.chat_id == chat_id)
            .values(status=status, next_share_at=None)
        )


@pytest.fixture
async def filled(ledger: Ledger) -> dict[str, list[str]]:
    """Line 1 (active card): 4 iMessage chats, 1 SMS; line 2 (pending card): 2 chats."""
    pol = ny_policy()
    await add_line(ledger, L1, NOW)
    await add_line(ledger, L2, NOW, state=CardState.pending)
    one = await add_chats(ledger, L1, 4, now=NOW, first_outbound_at=FIRST_OUT, prefix="a")
    sms = await add_chats(
        ledger, L1, 1, now=NOW, first_outbound_at=FIRST_OUT, prefix="s", service="SMS"
    )
    two = await add_chats(ledger, L2, 2, now=NOW, first_outbound_at=FIRST_OUT, prefix="b")
    async with ledger.write() as conn:
        await conn.execute(
            sa.update(chats)
            .where(chats.c.chat_id == one[2])
            .values(last_shared_at=NOW - timedelta(hours=1), share_count=1)
        )
    await recompute_chats(ledger, pol, now=NOW)
    await set_status(ledger, one[3], ChatStatus.opted_out)
    # Yesterday (NY) a[0] and a[1] were shared; today at 06:00 NY a[2] was (a forced share);
    # in the last 24 h one attempt failed and one was ambiguous.
    await add_attempt(ledger, one[0], L1, "shared", NOW - timedelta(hours=20))
    await add_attempt(ledger, one[1], L1, "ambiguous", NOW - timedelta(hours=21))
    await add_attempt(ledger, one[2], L1, "shared", NOW - timedelta(hours=1), forced=True)
    await add_attempt(
        ledger, one[2], L1, "failed", NOW - timedelta(hours=2), http_status=500, error_code=3006
    )
    await add_attempt(ledger, two[0], L2, "shared", NOW - timedelta(days=3))
    return {"one": one, "sms": sms, "two": two}


async def test_stats_per_line_and_total(ledger: Ledger, filled: dict[str, list[str]]) -> None:
    stats = await ledger_stats(ledger, now=NOW, zone=NY)
    data = stats.as_dict()
    assert data["today"] == "2026-03-03"
    totals = data["totals"]
    assert totals["chats"] == 7
    assert totals["by_status"] == {
        "active": 6,
        "blocked": 0,
        "gone": 0,
        "opted_out": 1,
        "paused": 0,
    }
    assert (totals["lines_ineligible"], totals["recipients_blocked"]) == (0, 0)
    assert totals["by_service"] == {"SMS": 1, "iMessage": 6}
    assert (totals["shared_today"], totals["shared_yesterday"]) == (1, 2)
    assert totals["attempts_24h"] == {"ambiguous": 1, "failed": 1, "shared": 2}
    assert (totals["ambiguous_24h"], totals["failed_24h"]) == (1, 1)
    # Nothing is due before 09:00; two line-1 chats are due at 09:00 NY (a[2] was shared today).
    assert totals["due_now"] == 0
    assert totals["next_due_at"] == datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    by_line = {s["line"]: s for s in data["lines"]}
    assert set(by_line) == {L1, L2}
    assert by_line[L1]["card_state"] == "active"
    assert by_line[L1]["chats"] == 5
    assert by_line[L2]["card_state"] == "pending"
    assert by_line[L2]["next_due_at"] is None, "a pending card makes nothing due"
    assert by_line[L2]["shared_yesterday"] == 0, "three days ago is not yesterday"

    later = await ledger_stats(ledger, now=NOW + timedelta(hours=3), zone=NY)
    assert later.total.due_now == 2
    assert {s.line: s.due_now for s in later.lines} == {L1: 2, L2: 0}


async def test_an_attempt_in_flight_is_shown_and_counted_from_its_claim(
    ledger: Ledger, filled: dict[str, list[str]]
) -> None:
    """A claim's attempt has no row until its outcome: `ledger show` and `ledger stats` read
    it from the chat's claim columns, as a ``started`` attempt."""
    at = NOW + timedelta(hours=3)
    claimed = await claim_batch(
        ledger, now=at, limit=1, instance="d0", lease=timedelta(minutes=5), policy=ny_policy()
    )
    [claim] = claimed.claims
    _, shown = await queries.get_chat(ledger, claim.chat_id)
    in_flight = shown[-1]
    assert (in_flight.id, in_flight.outcome, in_flight.started_at) == (
        claim.attempt_id,
        "started",
        at,
    )
    assert (in_flight.finished_at, in_flight.instance, in_flight.forced) == (None, "d0", False)
    async with ledger.read() as conn:
        rows = (
            await conn.execute(sa.select(sa.func.count()).where(attempts.c.id == claim.attempt_id))
        ).scalar_one()
    assert rows == 0
    stats = await ledger_stats(ledger, now=at, zone=NY)
    assert stats.total.attempts_24h.get("started") == 1
    by_line = {s.line: s.attempts_24h.get("started") for s in stats.lines}
    assert by_line == {L1: 1, L2: None}


async def test_export_streams_every_chat_in_both_formats(
    ledger: Ledger, filled: dict[str, list[str]]
) -> None:
    every = sorted(c for ids in filled.values() for c in ids)
    out = io.StringIO()
    written = await export_chats(ledger, out, fmt="csv", batch=2)
    assert written == 7
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == EXPORT_COLUMNS
    assert [r["chat_id"] for r in rows] == every, "keyset pages of 2 miss or repeat nothing"
    opted = next(r for r in rows if r["chat_id"] == filled["one"][3])
    assert (opted["status"], opted["next_share_at"], opted["is_group"]) == (
        "opted_out",
        "",
        "false",
    )
    assert datetime.fromisoformat(rows[0]["first_outbound_at"]) == FIRST_OUT

    out = io.StringIO()
    f = queries.ChatFilter(line=L1, status="active", limit=None)
    assert await export_chats(ledger, out, fmt="jsonl", chat_filter=f, batch=3) == 4
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["chat_id"] for r in records] == sorted(filled["one"][:3] + filled["sms"])
    assert all(r["line"] == L1 and r["is_group"] is False for r in records)
    assert records[0]["share_count"] == 0


async def test_pause_and_resume(ledger: Ledger, filled: dict[str, list[str]]) -> None:
    pol = ny_policy()
    chat = filled["one"][0]
    before = await chat_row(ledger, chat)
    assert before.next_share_at == datetime(2026, 3, 3, 14, 0, tzinfo=UTC)

    change = await set_chat_paused(ledger, chat, paused=True, policy=pol, now=NOW)
    assert (change.before, change.after, change.changed) == ("active", "paused", True)
    row = await chat_row(ledger, chat)
    assert (row.status, row.next_share_at) == ("paused", None)
    # A paused chat is never claimed, even at the window's opening.
    claimed = await claim_batch(
        ledger,
        now=NOW + timedelta(hours=3),
        limit=10,
        instance="t",
        lease=timedelta(minutes=5),
        policy=pol,
    )
    assert chat not in {c.chat_id for c in claimed.claims}

    again = await set_chat_paused(ledger, chat, paused=True, policy=pol, now=NOW)
    assert (again.changed, again.after) == (False, "paused")

    resumed = await set_chat_paused(ledger, chat, paused=False, policy=pol, now=NOW)
    assert (resumed.after, resumed.changed) == ("active", True)
    assert resumed.next_share_at == datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    assert (await chat_row(ledger, chat)).next_share_at == resumed.next_share_at

    with pytest.raises(ChatStateError, match="opted_out: only an active chat can be paused"):
        await set_chat_paused(ledger, filled["one"][3], paused=True, policy=pol, now=NOW)
    with pytest.raises(ChatStateError, match="opted_out: only a paused chat can be resumed"):
        await set_chat_paused(ledger, filled["one"][3], paused=False, policy=pol, now=NOW)
    with pytest.raises(NotFound, match="no chat 'nope'"):
        await set_chat_paused(ledger, "nope", paused=True, policy=pol, now=NOW)


async def test_plan_forecasts_per_line_and_hour(
    ledger: Ledger, filled: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_module, "PAGE", 2)  # several keyset pages over few chats
    pol = ny_policy()
    result = await forecast(ledger, pol, now=NOW, hours=24, chat_limit=100)
    # Line 1: a[0] and a[1] at 09:00 NY today. a[2] was shared today, so tomorrow 09:00 NY,
    # past the 24 h horizon. The SMS, opted-out and pending-card chats never.
    today_9 = datetime(2026, 3, 3, 14, tzinfo=UTC)
    tomorrow_9 = datetime(2026, 3, 4, 14, tzinfo=UTC)
    data = result.as_dict(with_chats=True)
    assert (data["total"], data["due_now"], data["in_flight"]) == (2, 0, 0)
    assert data["lines"] == [{"line": L1, "total": 2, "hours": [{"hour": today_9, "shares": 2}]}]
    one = filled["one"]
    assert sorted((p["chat_id"], p["at"]) for p in data["chats"]) == [
        (one[0], today_9),
        (one[1], today_9),
    ]

    # Over 48 h the rule is replayed after each predicted share: a[0] and a[1] come back.
    two_days = await forecast(ledger, pol, now=NOW, hours=48)
    assert two_days.per_line() == {L1: [(today_9, 2), (tomorrow_9, 3)]}
    assert (await forecast(ledger, pol, now=NOW, hours=48, line=L2)).total == 0

    # An in-flight claim is counted apart, not forecast.
    await claim_batch(
        ledger,
        now=datetime(2026, 3, 3, 14, 5, tzinfo=UTC),
        limit=1,
        instance="t",
        lease=timedelta(minutes=5),
        policy=pol,
    )
    during = await forecast(ledger, pol, now=datetime(2026, 3, 3, 14, 6, tzinfo=UTC), hours=1)
    assert (during.in_flight, during.due_now, during.total) == (1, 1, 1)
