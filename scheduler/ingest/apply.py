"""Writing activity into the ledger: dedupe by event id, merge, recompute next_share_at."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.ingest.events import ChatActivity, Event
from scheduler.ingest.merge import merge_activity
from scheduler.ledger.dialect import insert_ignore
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chat_facts, chats, line_facts, lines
from scheduler.ledger.models import CardState, webhook_events_table
from scheduler.rule import Policy, next_share_at

webhook_events = webhook_events_table
ApplyResult = Literal["applied", "duplicate", "ignored"]


async def ensure_line(conn: AsyncConnection, number: str, now: datetime) -> None:
    await conn.execute(
        insert_ignore(lines, conn.dialect.name).values(
            number=number, card_state=CardState.unknown, created_at=now, updated_at=now
        )
    )


async def upsert_activity(
    conn: AsyncConnection, act: ChatActivity, policy: Policy, now: datetime
) -> dict[str, Any]:
    """Merge one chat's activity; return the chat's new columns."""
    row = (await conn.execute(sa.select(chats).where(chats.c.chat_id == act.chat_id))).first()
    current = dict(row._mapping) if row is not None else None
    merged = merge_activity(current, act)
    line_number = merged.get("line")
    line_row = None
    if line_number:
        if current is None or current.get("line") != line_number:
            await ensure_line(conn, line_number, now)
        line_row = (
            await conn.execute(
                sa.select(lines.c.card_state, lines.c.paused, lines.c.timezone).where(
                    lines.c.number == line_number
                )
            )
        ).first()
    # A chat in flight keeps its lease as next_share_at; the recorder recomputes it.
    if merged.get("claim_attempt_id") is None:
        facts = line_facts(
            line_row.card_state if line_row else None,
            line_row.paused if line_row else False,
            line_row.timezone if line_row else None,
        )
        merged["next_share_at"] = next_share_at(
            chat_facts(SimpleNamespace(**merged)), facts, policy, now
        )
    merged["updated_at"] = now
    if current is None:
        merged["created_at"] = now
        await conn.execute(sa.insert(chats).values(**merged))
    else:
        changed = {k: v for k, v in merged.items() if current.get(k) != v}
        if changed:
            await conn.execute(
                sa.update(chats).where(chats.c.chat_id == act.chat_id).values(**changed)
            )
    return merged


async def apply_event(ledger: Ledger, event: Event, policy: Policy, now: datetime) -> ApplyResult:
    """Record the event id and its effect in one transaction; a repeated id changes nothing."""
    async with ledger.write() as conn:
        inserted = await conn.execute(
            insert_ignore(webhook_events, conn.dialect.name)
            .values(event_id=event.event_id, event_type=event.event_type, received_at=now)
            .returning(webhook_events.c.event_id)
        )
        if inserted.first() is None:
            return "duplicate"
        if event.activity is None:
            return "ignored"
        await upsert_activity(conn, event.activity, policy, now)
        return "applied"


async def prune_events(ledger: Ledger, older_than: datetime) -> int:
    async with ledger.write() as conn:
        result = await conn.execute(
            sa.delete(webhook_events).where(webhook_events.c.received_at < older_than)
        )
        return int(result.rowcount or 0)
