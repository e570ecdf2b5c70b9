"""Recipients and lines across the ledger, on SQLite and PostgreSQL.

Opt-outs (2024) and blocks (2026) belong to the recipient, on every chat and every line;
ineligible lines (2027, ``phone_number.status_updated``) pause the line, not its chats' day.
Everything goes through the real claim protocol and the real ingest path.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from scheduler.core.share_outcome import decide
from scheduler.core.status import ChatStatus, Outcome
from scheduler.errors import HandleBlocked, LineIneligible, LinqError, OptedOut
from scheduler.ingest.events import parse_event
from scheduler.ledger.chat_ops import set_chat_paused
from scheduler.ledger.claims import CallRecord, claim_batch, record_results
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.ingest import record_event, record_events
from scheduler.ledger.line_eligibility import PROBE_FIRST, PROBE_MAX, probe_backoff
from scheduler.ledger.recipients import recipient_counts, sync_blocked_handles
from tests.factories import add_chat, add_line, policy

LINE_A = "+14155550100"
LINE_B = "+14155550111"
ALICE = "+12125550101"
BOB = "+12125550102"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, inside the 09:00-20:00 UTC window
LEASE = timedelta(minutes=2)


async def _chat(
    ledger: Ledger, chat_id: str, line: str, recipients: str, *, is_group: bool = False
) -> None:
    await add_chat(ledger, chat_id, line, recipients, now=T0, is_group=is_group, next_share_at=T0)


async def _world(ledger: Ledger) -> None:
    """Alice on both lines, Bob on line B, and a group with both of them on line A."""
    await add_line(ledger, LINE_A, T0)
    await add_line(ledger, LINE_B, T0)
    await _chat(ledger, "alice-a", LINE_A, ALICE)
    await _chat(ledger, "alice-b", LINE_B, ALICE)
    await _chat(ledger, "bob-b", LINE_B, BOB)
    await _chat(ledger, "group-a", LINE_A, f"{ALICE},{BOB}", is_group=True)


async def _rows(ledger: Ledger) -> dict[str, Any]:
    async with ledger.read() as conn:
        return {r.chat_id: r for r in await conn.execute(sa.select(chats))}


async def _line(ledger: Ledger, number: str) -> Any:
    async with ledger.read() as conn:
        return (await conn.execute(sa.select(lines).where(lines.c.number == number))).one()


def _first_try(now: datetime) -> dict[str, Any]:
    """decide()'s arguments for the first try of a claim."""
    return {
        "now": now,
        "maybe_applied": False,
        "consecutive_failures": 0,
        "failure_backoff": timedelta(minutes=5),
    }


async def _share(
    ledger: Ledger, chat_id: str, error: LinqError | None, now: datetime
) -> CallRecord:
    """One share of ``chat_id`` through the claim protocol, answered with ``error``."""
    claimed = await claim_batch(
        ledger,
        now=now,
        limit=1,
        instance="test",
        lease=LEASE,
        policy=policy(),
        chat_ids=[chat_id],
    )
    [claim] = claimed.claims
    record = CallRecord(claim, decide(error, **_first_try(now)), now, tries=1)
    assert await record_results(ledger, [record], policy(), now) == []
    return record


def _message(
    event_id: str, chat_id: str, line: str, sender: str, at: datetime, *, stop: bool = False
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "message.received",
        "data": {
            "direction": "inbound",
            "service": "iMessage",
            "sent_at": at.isoformat(),
            "chat": {
                "id": chat_id,
                "is_group": False,
                "owner_handle": {"handle": line, "is_me": True},
                "health_status": {"status": "OPTED_OUT" if stop else "HEALTHY"},
            },
            "sender_handle": {"handle": sender},
        },
    }


def _line_status(event_id: str, line: str, status: str, reputation: str, at: datetime) -> Any:
    return parse_event(
        {
            "event_id": event_id,
            "event_type": "phone_number.status_updated",
            "data": {
                "phone_number": line,
                "previous_status": "ACTIVE",
                "new_status": status,
                "previous_reputation": "HEALTHY",
                "new_reputation": reputation,
                "changed_at": at.isoformat(),
            },
        }
    )


async def _inbound(ledger: Ledger, event: dict[str, Any], now: datetime) -> None:
    assert await record_event(ledger, parse_event(event), policy(), now) == "applied"


OPTED_OUT = "HTTP 403 code 2024"


# -- opt-outs ------------------------------------------------------------------------------


async def test_a_2024_opts_the_recipient_out_on_every_line_until_one_inbound_anywhere(
    ledger: Ledger,
) -> None:
    await _world(ledger)
    await _share(ledger, "alice-a", OptedOut(OPTED_OUT, status=403, code=2024), T0)
    rows = await _rows(ledger)
    # Alice's chat on the other line is opted out too, in the same transaction; Bob's chat and
    # the group are not touched.
    assert rows["alice-a"].status == rows["alice-b"].status == ChatStatus.opted_out
    assert rows["alice-a"].next_share_at is None and rows["alice-b"].next_share_at is None
    assert rows["bob-b"].status == rows["group-a"].status == ChatStatus.active
    assert rows["bob-b"].next_share_at == T0
    async with ledger.read() as conn:
        assert (await recipient_counts(conn)).opted_out == 1

    # Alice writes again on line B: every chat of hers is back, and due today.
    later = T0 + timedelta(hours=1)
    await _inbound(ledger, _message("e-1", "alice-b", LINE_B, ALICE, later), later)
    rows = await _rows(ledger)
    assert rows["alice-a"].status == rows["alice-b"].status == ChatStatus.active
    assert rows["alice-a"].next_share_at == later  # no day lost: due at once
    assert rows["alice-a"].last_shared_at is None and rows["alice-a"].share_count == 0
    async with ledger.read() as conn:
        assert (await recipient_counts(conn)).opted_out == 0


@pytest.mark.parametrize("inbound_first", [False, True])
async def test_an_opt_out_and_a_later_inbound_give_the_same_result_in_either_order(
    ledger: Ledger, inbound_first: bool
) -> None:
    await _world(ledger)
    stop_at = T0 - timedelta(minutes=30)
    hello_at = T0 - timedelta(minutes=10)
    stop = _message("stop", "alice-a", LINE_A, ALICE, stop_at, stop=True)
    hello = _message("hello", "alice-b", LINE_B, ALICE, hello_at)
    order = [hello, stop] if inbound_first else [stop, hello]
    for event in order:
        await _inbound(ledger, event, T0)
    rows = await _rows(ledger)
    assert rows["alice-a"].status == rows["alice-b"].status == ChatStatus.active


@pytest.mark.parametrize("inbound_first", [False, True])
async def test_an_inbound_older_than_the_2024_does_not_clear_it(
    ledger: Ledger, inbound_first: bool
) -> None:
    await _world(ledger)
    old = _message("old", "alice-b", LINE_B, ALICE, T0 - timedelta(minutes=5))
    if inbound_first:
        await _inbound(ledger, old, T0)
    await _share(ledger, "alice-a", OptedOut(OPTED_OUT, status=403, code=2024), T0)
    if not inbound_first:
        await _inbound(ledger, old, T0 + timedelta(minutes=1))  # a late webhook
    rows = await _rows(ledger)
    assert rows["alice-a"].status == rows["alice-b"].status == ChatStatus.opted_out


async def test_a_stop_webhook_opts_the_recipient_out_on_every_line(ledger: Ledger) -> None:
    await _world(ledger)
    stop_at = T0 - timedelta(minutes=1)
    # Batched like the webhook route does, together with an unrelated event.
    results = await record_events(
        ledger,
        [
            parse_event(_message("stop", "alice-a", LINE_A, ALICE, stop_at, stop=True)),
            parse_event(_message("bob", "bob-b", LINE_B, BOB, stop_at)),
        ],
        policy(),
        T0,
    )
    assert results == ["applied", "applied"]
    rows = await _rows(ledger)
    assert rows["alice-a"].status == rows["alice-b"].status == ChatStatus.opted_out
    assert rows["bob-b"].status == ChatStatus.active


async def test_a_new_chat_of_an_opted_out_recipient_starts_opted_out(ledger: Ledger) -> None:
    await _world(ledger)
    await _share(ledger, "alice-a", OptedOut(OPTED_OUT, status=403, code=2024), T0)
    created = {
        "event_id": "new-chat",
        "event_type": "chat.created",
        "data": {
            "id": "alice-new",
            "is_group": False,
            "service": "iMessage",
            "handles": [
                {"handle": LINE_B, "is_me": True},
                {"handle": ALICE, "is_me": False},
            ],
        },
    }
    await _inbound(ledger, created, T0 + timedelta(minutes=1))
    assert (await _rows(ledger))["alice-new"].status == ChatStatus.opted_out


# -- blocked handles -----------------------------------------------------------------------


async def test_a_2026_blocks_the_recipient_until_the_blocked_list_no_longer_has_it(
    ledger: Ledger,
) -> None:
    await _world(ledger)
    await _share(ledger, "alice-a", HandleBlocked("blocked", status=403, code=2026), T0)
    rows = await _rows(ledger)
    assert rows["alice-a"].status == rows["alice-b"].status == ChatStatus.blocked
    assert rows["alice-a"].next_share_at is None and rows["alice-b"].next_share_at is None
    assert rows["group-a"].status == ChatStatus.active

    # An inbound message does not clear a block (Linq drops theirs anyway).
    await _inbound(ledger, _message("hi", "alice-b", LINE_B, ALICE, T0), T0)
    assert (await _rows(ledger))["alice-b"].status == ChatStatus.blocked

    # A list read that started before the 2026 may predate it: the block stays.
    sync = await sync_blocked_handles(
        ledger, {}, read_started_at=T0 - timedelta(seconds=1), policy=policy(), now=T0
    )
    assert (sync.blocked, sync.unblocked) == (0, 0)
    assert (await _rows(ledger))["alice-a"].status == ChatStatus.blocked

    later = T0 + timedelta(hours=2)
    sync = await sync_blocked_handles(
        ledger, {BOB: T0}, read_started_at=later, policy=policy(), now=later
    )
    assert (sync.blocked, sync.unblocked) == (1, 1)
    rows = await _rows(ledger)
    assert rows["alice-a"].status == rows["alice-b"].status == ChatStatus.active
    assert rows["alice-a"].next_share_at == later  # the same day, not lost
    assert rows["bob-b"].status == ChatStatus.blocked
    async with ledger.read() as conn:
        counts = await recipient_counts(conn)
    assert (counts.opted_out, counts.blocked) == (0, 1)


# -- ineligible lines ----------------------------------------------------------------------


async def test_a_2027_pauses_the_line_and_probes_it_with_a_doubling_backoff(
    ledger: Ledger,
) -> None:
    await _world(ledger)
    await _chat(ledger, "carol-a", LINE_A, "+12125550103")
    refused = LineIneligible("ineligible", status=403, code=2027)
    record = await _share(ledger, "alice-a", refused, T0)
    assert record.decision.outcome == Outcome.rejected and not record.decision.failed
    line = await _line(ledger, LINE_A)
    assert line.ineligible_since == T0 and line.probe_at == T0 + PROBE_FIRST
    rows = await _rows(ledger)
    # Every chat of the line waits for the probe; none lost its day; line B goes on.
    for chat_id in ("alice-a", "carol-a", "group-a"):
        assert rows[chat_id].status == ChatStatus.active
        assert rows[chat_id].last_shared_at is None
    assert rows["alice-a"].next_share_at == T0 + PROBE_FIRST
    assert rows["carol-a"].next_share_at == T0 + PROBE_FIRST
    assert rows["alice-b"].next_share_at == T0

    # At the probe, one chat of the line is claimed, not all of them.
    probe_at = T0 + PROBE_FIRST
    claimed = await claim_batch(
        ledger, now=probe_at, limit=10, instance="t", lease=LEASE, policy=policy()
    )
    on_a = [c for c in claimed.claims if c.line == LINE_A]
    assert len(on_a) == 1
    decision = decide(refused, **_first_try(probe_at))
    await record_results(
        ledger,
        [
            CallRecord(
                c,
                decision if c.line == LINE_A else decide(None, **_first_try(probe_at)),
                probe_at,
                1,
            )
            for c in claimed.claims
        ],
        policy(),
        probe_at,
    )
    line = await _line(ledger, LINE_A)
    assert line.probe_at == probe_at + 2 * PROBE_FIRST  # doubled
    assert line.ineligible_since == T0

    # The next probe goes through: the line resumes, its chats are due again at once.
    second = line.probe_at
    claimed = await claim_batch(
        ledger, now=second, limit=10, instance="t", lease=LEASE, policy=policy()
    )
    [probe] = [c for c in claimed.claims if c.line == LINE_A]
    await record_results(
        ledger, [CallRecord(probe, decide(None, **_first_try(second)), second, 1)], policy(), second
    )
    line = await _line(ledger, LINE_A)
    assert line.ineligible_since is None and line.probe_at is None
    rows = await _rows(ledger)
    waiting = [c for c in ("alice-a", "carol-a") if c != probe.chat_id]
    assert all(rows[c].next_share_at == second for c in waiting)


def test_the_probe_backoff_doubles_up_to_its_cap() -> None:
    waits = []
    seconds = 0
    for _ in range(8):
        wait = probe_backoff(seconds)
        waits.append(wait)
        seconds = int(wait.total_seconds())
    assert waits[:3] == [PROBE_FIRST, 2 * PROBE_FIRST, 4 * PROBE_FIRST]
    assert max(waits) == PROBE_MAX == waits[-1]


async def test_status_updated_webhooks_pause_and_resume_the_line_in_time_order(
    ledger: Ledger,
) -> None:
    await _world(ledger)
    flagged_at = T0 - timedelta(minutes=3)
    result = await record_event(
        ledger, _line_status("f", LINE_A, "FLAGGED", "AT_RISK", flagged_at), policy(), T0
    )
    assert result == "applied"
    line = await _line(ledger, LINE_A)
    assert line.ineligible_since == flagged_at and line.probe_at == T0 + PROBE_FIRST
    assert "FLAGGED" in line.ineligible_reason
    assert (await _rows(ledger))["alice-a"].next_share_at == T0 + PROBE_FIRST

    # An ACTIVE older than the FLAGGED (delivered late) changes nothing.
    stale = _line_status("s", LINE_A, "ACTIVE", "HEALTHY", flagged_at - timedelta(minutes=1))
    await record_event(ledger, stale, policy(), T0)
    assert (await _line(ledger, LINE_A)).ineligible_since == flagged_at

    # A CRITICAL reputation keeps it paused even with an ACTIVE status.
    critical = _line_status("c", LINE_A, "ACTIVE", "CRITICAL", flagged_at + timedelta(seconds=1))
    await record_events(ledger, [critical], policy(), T0)
    assert (await _line(ledger, LINE_A)).ineligible_since == flagged_at

    resumed_at = T0 + timedelta(minutes=1)
    active = _line_status("a", LINE_A, "ACTIVE", "HEALTHY", resumed_at)
    await record_events(ledger, [active], policy(), resumed_at)
    line = await _line(ledger, LINE_A)
    assert line.ineligible_since is None and line.probe_at is None
    rows = await _rows(ledger)
    assert rows["alice-a"].next_share_at == resumed_at
    assert rows["alice-a"].last_shared_at is None


async def test_resuming_a_chat_gives_it_its_recipients_state(ledger: Ledger) -> None:
    await _world(ledger)
    pol = policy()
    await set_chat_paused(ledger, "alice-b", paused=True, policy=pol, now=T0)
    await _share(ledger, "alice-a", OptedOut(OPTED_OUT, status=403, code=2024), T0)
    assert (await _rows(ledger))["alice-b"].status == ChatStatus.paused  # the operator's
    change = await set_chat_paused(ledger, "alice-b", paused=False, policy=pol, now=T0)
    assert change.after == ChatStatus.opted_out
    assert (await _rows(ledger))["alice-b"].next_share_at is None


async def test_several_2027_answers_in_one_batch_pause_the_line_once(ledger: Ledger) -> None:
    await _world(ledger)
    await _chat(ledger, "carol-a", LINE_A, "+12125550103")
    claimed = await claim_batch(
        ledger, now=T0, limit=10, instance="t", lease=LEASE, policy=policy()
    )
    on_a = [c for c in claimed.claims if c.line == LINE_A]
    assert len(on_a) == 2  # the line was not known to be ineligible when they were claimed
    refused = decide(LineIneligible("ineligible", status=403, code=2027), **_first_try(T0))
    await record_results(ledger, [CallRecord(c, refused, T0, 1) for c in on_a], policy(), T0)
    line = await _line(ledger, LINE_A)
    # One fact about the line, not two: the first wait, not a wait doubled per chat.
    assert line.probe_at == T0 + PROBE_FIRST
    rows = await _rows(ledger)
    assert {rows[c.chat_id].next_share_at for c in on_a} == {T0 + PROBE_FIRST}


async def test_a_chat_opted_out_before_recipients_were_kept_stays_so_until_it_hears_back(
    ledger: Ledger,
) -> None:
    # A ledger migrated from 0002: the chat is opted out, its recipient has no record.
    await add_line(ledger, LINE_A, T0)
    await add_chat(ledger, "legacy", LINE_A, ALICE, now=T0, status=ChatStatus.opted_out)
    sent = {
        "event_id": "sent",
        "event_type": "message.sent",
        "data": {
            "direction": "outbound",
            "service": "iMessage",
            "sent_at": T0.isoformat(),
            "chat": {"id": "legacy", "owner_handle": {"handle": LINE_A, "is_me": True}},
        },
    }
    await _inbound(ledger, sent, T0)
    assert (await _rows(ledger))["legacy"].status == ChatStatus.opted_out
    later = T0 + timedelta(minutes=5)
    await _inbound(ledger, _message("hi", "legacy", LINE_A, ALICE, later), later)
    assert (await _rows(ledger))["legacy"].status == ChatStatus.active
