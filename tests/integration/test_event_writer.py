"""Group commit of webhook events: one transaction per batch, the same ledger as one by one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from scheduler.ingest.events import parse_event
from scheduler.ingest.writer import EventWriter
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chats
from scheduler.ledger.ingest import record_event, record_events
from scheduler.ledger.models import webhook_events_table
from tests.factories import policy
from tests.unit.test_events import message_event

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)


def _events() -> list[dict[str, object]]:
    out = []
    for i in range(30):
        out.append(
            message_event(
                "message.sent",
                event_id=f"e{i}",
                chat_id=f"c{i % 7}",
                sent_at=T0 + timedelta(minutes=i),
            )
        )
    out.append(out[3])  # a repeat inside the batch
    out.append(
        message_event(
            "message.received",
            event_id="in",
            direction="inbound",
            chat_id="c1",
            sent_at=T0 + timedelta(hours=2),
        )
    )
    return out


async def _snapshot(ledger: Ledger) -> list[tuple[object, ...]]:
    async with ledger.read() as conn:
        rows = await conn.execute(
            sa.select(
                chats.c.chat_id,
                chats.c.first_outbound_at,
                chats.c.last_outbound_at,
                chats.c.last_inbound_at,
                chats.c.recipients,
            ).order_by(chats.c.chat_id)
        )
        return [tuple(r) for r in rows]


async def test_batch_equals_one_by_one(ledger_url: str, tmp_path: object) -> None:
    pol = policy()
    payloads = _events()
    batched = Ledger(create_engine(ledger_url, pool_size=2))
    try:
        results = await record_events(batched, [parse_event(p) for p in payloads], pol, T0)
        assert results.count("duplicate") == 1
        assert results[-2] == "duplicate"
        assert results.count("applied") == len(payloads) - 1
        again = await record_events(batched, [parse_event(p) for p in payloads[:5]], pol, T0)
        assert again == ["duplicate"] * 5
        batch_state = await _snapshot(batched)
        async with batched.write() as conn:
            await conn.execute(sa.delete(chats))
            await conn.execute(sa.delete(webhook_events_table))
        for p in payloads:
            await record_event(batched, parse_event(p), pol, T0)
        assert await _snapshot(batched) == batch_state
        assert len(batch_state) == 7
    finally:
        await batched.dispose()


@pytest.mark.parametrize("lanes", [1, 4])
async def test_concurrent_submissions_share_transactions(ledger: Ledger, lanes: int) -> None:
    pol = policy()
    writer = EventWriter(ledger, lambda: pol, lanes=lanes)
    payloads = _events()
    try:
        results = await asyncio.gather(*(writer.submit(parse_event(p)) for p in payloads))
    finally:
        await writer.close()
    assert results.count("applied") == len(payloads) - 1
    assert results.count("duplicate") == 1
    assert len(await _snapshot(ledger)) == 7


async def test_lanes_write_each_chat_from_one_lane_and_batch_what_arrived_together(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events of one chat are never in two batches written at once, and deliveries that
    arrive together share a batch."""
    batches: list[list[str]] = []

    async def recorded(*args: Any, **kwargs: Any) -> Any:
        batches.append([e.activity.chat_id for e in args[1] if e.activity is not None])
        return await record_events(*args, **kwargs)

    monkeypatch.setattr("scheduler.ingest.writer.record_events", recorded)
    pol = policy()
    writer = EventWriter(ledger, lambda: pol, lanes=4)
    payloads = _events()
    try:
        results = await asyncio.gather(*(writer.submit(parse_event(p)) for p in payloads))
    finally:
        await writer.close()
    assert results.count("applied") == len(payloads) - 1
    # Each chat's events went to one lane: every chat is in exactly one batch.
    lanes_of_chat: dict[str, int] = {}
    for number, chat_ids in enumerate(batches):
        for chat_id in chat_ids:
            assert lanes_of_chat.setdefault(chat_id, number) == number
    # Submitted together: one batch per lane that has events, not one per event.
    assert len(batches) <= 4
    assert sum(len(b) for b in batches) == len(payloads)
