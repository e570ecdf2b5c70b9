"""Writing activity into the ledger: dedupe by event id, merge, recompute next_share_at.

Webhooks, backfill and import all end here. A chat whose facts do not change is not written
at all (not even ``updated_at``), so replaying known activity leaves the ledger as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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
from scheduler.rule import LineFacts, Policy, next_share_at

webhook_events = webhook_events_table
ApplyResult = Literal["applied", "duplicate", "ignored"]
Merge = Callable[[dict[str, Any] | None], dict[str, Any]]

# Bound parameters per IN (...) list: far below SQLite's and PostgreSQL's limits.
_CHUNK = 500
# Bookkeeping columns: a change in these alone is not a change of the chat.
_BOOKKEEPING = frozenset({"next_share_at", "updated_at", "created_at"})
_UNKNOWN_LINE = line_facts(None, False, None)


@dataclass(slots=True)
class UpsertCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: UpsertCounts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged


async def ensure_line(conn: AsyncConnection, number: str, now: datetime) -> None:
    await conn.execute(
        insert_ignore(lines, conn.dialect.name).values(
            number=number, card_state=CardState.unknown, created_at=now, updated_at=now
        )
    )


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def _current_rows(conn: AsyncConnection, chat_ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for part in _chunks(chat_ids):
        for row in await conn.execute(sa.select(chats).where(chats.c.chat_id.in_(part))):
            found[row.chat_id] = dict(row._mapping)
    return found


async def _line_facts(
    conn: AsyncConnection, numbers: set[str], now: datetime, *, create: bool
) -> dict[str, LineFacts]:
    facts: dict[str, LineFacts] = {}
    wanted = sorted(numbers)
    for part in _chunks(wanted):
        query = sa.select(lines.c.number, lines.c.card_state, lines.c.paused, lines.c.timezone)
        for row in await conn.execute(query.where(lines.c.number.in_(part))):
            facts[row.number] = line_facts(row.card_state, row.paused, row.timezone)
    if create:
        for number in wanted:
            if number not in facts:
                await ensure_line(conn, number, now)
    return facts


def _schedule(merged: dict[str, Any], line: LineFacts, policy: Policy, now: datetime) -> None:
    # A chat in flight keeps its lease as next_share_at; the recorder recomputes it.
    if merged.get("claim_attempt_id") is None:
        merged["next_share_at"] = next_share_at(
            chat_facts(SimpleNamespace(**merged)), line, policy, now
        )


async def upsert_chats(
    conn: AsyncConnection,
    merges: Mapping[str, Merge],
    policy: Policy,
    now: datetime,
    *,
    write: bool = True,
) -> UpsertCounts:
    """Merge many chats in the caller's transaction; ``write=False`` only counts.

    ``merges`` maps a chat id to a function from its current columns (None when the chat is
    new) to its merged columns. Lines the chats name are created when missing.
    """
    counts = UpsertCounts()
    if not merges:
        return counts
    current = await _current_rows(conn, list(merges))
    merged_rows = {chat_id: merge(current.get(chat_id)) for chat_id, merge in merges.items()}
    numbers = {m["line"] for m in merged_rows.values() if m.get("line")}
    facts = await _line_facts(conn, numbers, now, create=write)
    inserts: list[dict[str, Any]] = []
    updates: list[tuple[str, dict[str, Any]]] = []
    for chat_id, merged in merged_rows.items():
        before = current.get(chat_id)
        line = facts.get(merged.get("line") or "", _UNKNOWN_LINE)
        if before is None:
            _schedule(merged, line, policy, now)
            merged["chat_id"] = chat_id
            merged["created_at"] = now
            merged["updated_at"] = now
            inserts.append(merged)
            continue
        changed = {k: v for k, v in merged.items() if k not in _BOOKKEEPING and before.get(k) != v}
        if not changed:
            counts.unchanged += 1
            continue
        _schedule(merged, line, policy, now)
        if merged.get("next_share_at") != before.get("next_share_at"):
            changed["next_share_at"] = merged["next_share_at"]
        changed["updated_at"] = now
        updates.append((chat_id, changed))
    counts.created = len(inserts)
    counts.updated = len(updates)
    if write:
        if inserts:
            await conn.execute(sa.insert(chats), inserts)
        for chat_id, changed in updates:
            await conn.execute(sa.update(chats).where(chats.c.chat_id == chat_id).values(**changed))
    return counts


def merge_all(acts: Iterable[ChatActivity]) -> Merge:
    """A merge applying several activities of one chat, in order."""
    ordered = list(acts)

    def merge(current: dict[str, Any] | None) -> dict[str, Any]:
        chat = current
        for act in ordered:
            chat = merge_activity(chat, act)
        assert chat is not None, "merge_all needs at least one activity"
        return chat

    return merge


async def upsert_activity(
    conn: AsyncConnection, act: ChatActivity, policy: Policy, now: datetime
) -> UpsertCounts:
    """Merge one chat's activity in the caller's transaction."""
    return await upsert_chats(conn, {act.chat_id: merge_all([act])}, policy, now)


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
    """Forget event ids received before ``older_than`` (past the retention period)."""
    async with ledger.write() as conn:
        result = await conn.execute(
            sa.delete(webhook_events).where(webhook_events.c.received_at < older_than)
        )
        return int(result.rowcount or 0)
