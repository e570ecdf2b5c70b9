"""Webhook activity in any order, any number of times, on SQLite and PostgreSQL.

Also: history (``reconciled_at``) never makes a past day due, and event ids are pruned after
their retention period while a replay of a pruned event is refused by its timestamp.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from scheduler.core.status import CardState, ChatStatus
from scheduler.ingest.events import parse_event
from scheduler.ingest.signing import SignatureVerdict, verify
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.ingest import prune_events, record_event
from scheduler.ledger.models import webhook_events_table
from tests.factories import add_line, policy

LINE = "+14155550100"
CUSTOMER = "+12125550199"
OTHER = "+33612345678"
# A Tuesday; the share window is 09:00-20:00 UTC.
NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
H = timedelta(hours=1)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def message(
    event_id: str,
    event_type: str,
    at: datetime,
    *,
    chat_id: str = "chat-a",
    health: str = "HEALTHY",
    health_at: datetime | None = None,
    reconciled: bool = False,
    sender: str = CUSTOMER,
    group: bool = False,
) -> dict[str, Any]:
    inbound = event_type == "message.received"
    status: dict[str, Any] = {"status": health}
    if health_at is not None:
        status["updated_at"] = iso(health_at)
    data: dict[str, Any] = {
        "id": f"msg-{event_id}",
        "direction": "inbound" if inbound else "outbound",
        "service": "iMessage",
        "sent_at": iso(at),
        "delivered_at": iso(at) if event_type == "message.delivered" else None,
        "chat": {
            "id": chat_id,
            "is_group": group,
            "owner_handle": {"handle": LINE, "is_me": True},
            "health_status": status,
        },
        "sender_handle": {"handle": sender if inbound else LINE, "is_me": not inbound},
        "parts": [{"type": "text", "value": "hi"}],
    }
    if reconciled:
        data["reconciled_at"] = iso(NOW)
    return {
        "api_version": "v3",
        "event_id": event_id,
        "event_type": event_type,
        "created_at": iso(at),
        "webhook_version": "2026-02-03",
        "data": data,
    }


def chat_created(event_id: str, chat_id: str, *, handles: list[str], health: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "chat.created",
        "data": {
            "id": chat_id,
            "is_group": len(handles) > 1,
            "service": "iMessage",
            "handles": [
                {"handle": LINE, "is_me": True},
                *({"handle": h, "is_me": False} for h in handles),
            ],
            "health_status": {"status": health, "updated_at": iso(NOW - 50 * H)},
        },
    }


T0 = NOW - 48 * H
CLEAN = [
    chat_created("c-a", "chat-a", handles=[CUSTOMER], health="HEALTHY"),
    message("a1", "message.sent", T0),
    message("a2", "message.delivered", T0),
    message("a3", "message.received", T0 + H),
    message("a4", "message.sent", T0 + 2 * H),
    message("a5", "message.delivered", T0 + 2 * H),
    # The recipient writes STOP, then writes again: opted back in.
    message("a6", "message.received", T0 + 3 * H, health="OPTED_OUT", health_at=T0 + 3 * H),
    message("a7", "message.received", T0 + 4 * H),
    # A message recovered late, older than everything: history that moves first_outbound_at.
    message("a8", "message.sent", T0 - 24 * H, reconciled=True),
    # A group chat whose recipients write in, and whose last word is STOP.
    chat_created("c-b", "chat-b", handles=[OTHER, CUSTOMER], health="HEALTHY"),
    message("b1", "message.sent", T0, chat_id="chat-b", group=True),
    message("b2", "message.received", T0 + H, chat_id="chat-b", sender=OTHER, group=True),
    message(
        "b3",
        "message.received",
        T0 + 2 * H,
        chat_id="chat-b",
        health="OPTED_OUT",
        sender=OTHER,
        group=True,
    ),
    # Not a chat event: acknowledged and ignored.
    {"event_id": "r1", "event_type": "reaction.added", "data": {"chat_id": "chat-a"}},
]


async def _apply(ledger: Ledger, payloads: list[dict[str, Any]]) -> list[str]:
    results = []
    for payload in payloads:
        results.append(await record_event(ledger, parse_event(payload), policy(), NOW))
    return results


async def _dump(ledger: Ledger) -> dict[str, list[dict[str, Any]]]:
    async with ledger.read() as conn:
        return {
            name: [dict(r._mapping) for r in await conn.execute(sa.select(t).order_by(t.c[key]))]
            for name, t, key in (
                ("chats", chats, "chat_id"),
                ("lines", lines, "number"),
                ("events", webhook_events_table, "event_id"),
            )
        }


async def _wipe(ledger: Ledger) -> None:
    async with ledger.write() as conn:
        for table in (chats, webhook_events_table, lines):
            await conn.execute(sa.delete(table))
    await add_line(ledger, LINE, NOW)


async def test_any_order_and_repeats_leave_the_ledger_of_the_clean_sequence(
    ledger: Ledger,
) -> None:
    await add_line(ledger, LINE, NOW)
    assert set(await _apply(ledger, CLEAN)) == {"applied", "ignored"}
    clean = await _dump(ledger)
    a, b = clean["chats"]
    assert (a["chat_id"], a["status"], a["recipients"]) == ("chat-a", ChatStatus.active, CUSTOMER)
    assert a["first_outbound_at"] == T0 - 24 * H
    assert a["last_outbound_at"] == T0 + 2 * H
    assert a["last_inbound_at"] == T0 + 4 * H
    assert a["next_share_at"] == NOW  # due now: card active, in the window, never shared
    assert (b["status"], b["recipients"], b["is_group"]) == (
        ChatStatus.opted_out,
        ",".join(sorted([OTHER, CUSTOMER])),
        True,
    )
    assert b["next_share_at"] is None
    assert len(clean["events"]) == len(CLEAN)

    delivered_first = sorted(CLEAN, key=lambda p: p["event_type"] != "message.delivered")
    orders = [list(reversed(CLEAN)), delivered_first]
    rng = random.Random(6)
    for _ in range(6):
        orders.append(rng.sample(CLEAN, len(CLEAN)))
    for order in orders:
        await _wipe(ledger)
        thrice = [p for p in order for _ in range(3)]
        results = await _apply(ledger, thrice)
        assert results.count("duplicate") == 2 * len(CLEAN)
        assert await _dump(ledger) == clean


async def test_a_repeated_event_changes_nothing_at_all(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOW)
    await _apply(ledger, CLEAN)
    before = await _dump(ledger)
    # The same ids a day later: not even updated_at or received_at move.
    for payload in CLEAN:
        assert await record_event(ledger, parse_event(payload), policy(), NOW + 24 * H) == (
            "duplicate"
        )
    assert await _dump(ledger) == before


async def test_known_activity_under_a_new_event_id_writes_nothing(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOW)
    await _apply(ledger, CLEAN)
    before = (await _dump(ledger))["chats"]
    again = message("a2-bis", "message.delivered", T0)
    assert await record_event(ledger, parse_event(again), policy(), NOW + H) == "applied"
    assert (await _dump(ledger))["chats"] == before


async def test_history_never_makes_a_past_day_due(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOW)
    evening = NOW.replace(hour=21)  # after today's window
    # A chat learnt of only through a reconciled message sent this morning.
    late = message("h1", "message.sent", NOW.replace(hour=10), chat_id="h-1", reconciled=True)
    assert await record_event(ledger, parse_event(late), policy(), evening) == "applied"
    # A chat shared this morning, then history from three days ago arrives.
    await _apply(ledger, [message("h2", "message.sent", NOW - 72 * H, chat_id="h-2")])
    async with ledger.write() as conn:
        await conn.execute(
            sa.update(chats)
            .where(chats.c.chat_id == "h-2")
            .values(last_shared_at=NOW.replace(hour=10), share_count=1)
        )
    old = message("h3", "message.sent", NOW - 96 * H, chat_id="h-2", reconciled=True)
    assert await record_event(ledger, parse_event(old), policy(), NOW) == "applied"
    rows = {r["chat_id"]: r for r in (await _dump(ledger))["chats"]}
    tomorrow_opens = (NOW + 24 * H).replace(hour=9)
    assert rows["h-1"]["first_outbound_at"] == NOW.replace(hour=10)
    assert rows["h-1"]["next_share_at"] == tomorrow_opens
    assert rows["h-2"]["first_outbound_at"] == NOW - 96 * H
    assert rows["h-2"]["next_share_at"] == tomorrow_opens
    # History arriving inside today's window, for a chat not shared today: today is due.
    today = message("h4", "message.sent", NOW - 96 * H, chat_id="h-3", reconciled=True)
    await record_event(ledger, parse_event(today), policy(), NOW)
    rows = {r["chat_id"]: r for r in (await _dump(ledger))["chats"]}
    assert rows["h-3"]["next_share_at"] == NOW


async def test_opted_out_chat_payload_then_an_inbound_message_clears_it(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOW)
    stopped = chat_created("o1", "chat-o", handles=[CUSTOMER], health="OPTED_OUT")
    await _apply(ledger, [stopped, message("o2", "message.sent", T0, chat_id="chat-o")])
    row = (await _dump(ledger))["chats"][0]
    assert row["status"] == ChatStatus.opted_out
    assert row["next_share_at"] is None
    hello = message("o3", "message.received", NOW - H, chat_id="chat-o")
    await _apply(ledger, [hello])
    row = (await _dump(ledger))["chats"][0]
    assert row["status"] == ChatStatus.active
    assert row["next_share_at"] == NOW


async def test_event_ids_are_pruned_after_retention_and_a_pruned_replay_is_stale(
    ledger: Ledger,
) -> None:
    await add_line(ledger, LINE, NOW)
    retention = timedelta(days=7)
    old = message("p-old", "message.sent", T0)
    await record_event(ledger, parse_event(old), policy(), NOW - retention - H)
    await record_event(ledger, parse_event(message("p-new", "message.sent", T0)), policy(), NOW)
    assert await prune_events(ledger, NOW - retention) == 1
    ids = [e["event_id"] for e in (await _dump(ledger))["events"]]
    assert ids == ["p-new"]
    # A replay of the pruned delivery carries its original timestamp: refused before any write.
    stamp = str(int((NOW - retention - H).timestamp()))
    verdict = verify(
        secrets=["s3cret"],
        timestamp=stamp,
        signature="0" * 64,
        body=b"{}",
        now_unix=NOW.timestamp(),
        tolerance_seconds=300,
    )
    assert verdict == SignatureVerdict.stale


async def test_a_line_learnt_from_a_webhook_starts_with_an_unknown_card(ledger: Ledger) -> None:
    await _apply(ledger, [message("l1", "message.sent", T0, chat_id="chat-l")])
    dump = await _dump(ledger)
    assert [(r["number"], r["card_state"]) for r in dump["lines"]] == [(LINE, CardState.unknown)]
    assert dump["chats"][0]["next_share_at"] is None
