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
from tests.factories import message_event, policy

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


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_concurrent_submissions_share_transactions(ledger: Ledger, concurrency: int) -> None:
    pol = policy()
    writer = EventWriter(ledger, lambda: pol, concurrency=concurrency)
    payloads = _events()
    try:
        results = await asyncio.gather(*(writer.submit(parse_event(p)) for p in payloads))
    finally:
        await writer.close()
    assert results.count("applied") == len(payloads) - 1
    assert results.count("duplicate") == 1
    assert len(await _snapshot(ledger)) == 7


async def test_batches_written_at_once_never_share_a_chat(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several batches are written at once, but never two with events of the same chat; a
    chat's events are written in the order they came."""
    writing: set[str] = set()
    most_at_once = 0
    written: list[str] = []

    async def recorded(*args: Any, **kwargs: Any) -> Any:
        nonlocal most_at_once
        chat_ids = {e.activity.chat_id for e in args[1] if e.activity is not None}
        assert not chat_ids & writing, "two batches at once hold one chat"
        writing.update(chat_ids)
        most_at_once = max(most_at_once, len(writing))
        written.extend(e.event_id for e in args[1])
        try:
            await asyncio.sleep(0.02)  # a slow server: the other batches start meanwhile
            return await record_events(*args, **kwargs)
        finally:
            writing.difference_update(chat_ids)

    monkeypatch.setattr("scheduler.ingest.writer.record_events", recorded)
    pol = policy()
    writer = EventWriter(ledger, lambda: pol, concurrency=4)
    payloads = _events()

    async def trickle(i: int, payload: dict[str, object]) -> str:
        await asyncio.sleep(0.005 * i)  # deliveries keep coming while batches are written
        return await writer.submit(parse_event(payload))

    try:
        results = await asyncio.gather(*(trickle(i, p) for i, p in enumerate(payloads)))
    finally:
        await writer.close()
    assert results.count("applied") == len(payloads) - 1
    assert most_at_once > 1
    order: dict[str, int] = {}
    for n, event_id in enumerate(written):
        order.setdefault(event_id, n)
    for chat in {str(p["data"]["chat"]["id"]) for p in payloads}:  # type: ignore[index]
        ids = [str(p["event_id"]) for p in payloads if p["data"]["chat"]["id"] == chat]  # type: ignore[index]
        positions = [order[i] for i in dict.fromkeys(ids)]
        assert positions == sorted(positions), chat
    assert len(await _snapshot(ledger)) == 7
