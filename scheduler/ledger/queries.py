"""Read-side queries for the CLI and the HTTP side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scheduler.errors import NotFound
from scheduler.ledger.claims import attempts
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines


@dataclass(frozen=True)
class ChatFilter:
    due_at: datetime | None = None  # only chats due at this time
    line: str | None = None
    status: str | None = None
    shared_since: datetime | None = None
    never_shared: bool = False
    limit: int | None = 100


def _filtered(f: ChatFilter) -> sa.Select[Any]:
    query = sa.select(chats)
    if f.due_at is not None:
        query = query.where(chats.c.next_share_at <= f.due_at).where(
            chats.c.claim_attempt_id.is_(None)
        )
        query = query.order_by(chats.c.next_share_at, chats.c.chat_id)
    else:
        query = query.order_by(chats.c.chat_id)
    if f.line is not None:
        query = query.where(chats.c.line == f.line)
    if f.status is not None:
        query = query.where(chats.c.status == f.status)
    if f.shared_since is not None:
        query = query.where(chats.c.last_shared_at >= f.shared_since)
    if f.never_shared:
        query = query.where(chats.c.last_shared_at.is_(None))
    if f.limit is not None:
        query = query.limit(f.limit)
    return query


async def list_chats(ledger: Ledger, f: ChatFilter) -> list[dict[str, Any]]:
    async with ledger.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(_filtered(f))]


async def stream_chats(
    ledger: Ledger, f: ChatFilter, batch: int = 5000
) -> AsyncIterator[dict[str, Any]]:
    """Every matching chat, in keyset pages, in bounded memory."""
    after = ""
    while True:
        query = _filtered(ChatFilter(**{**f.__dict__, "limit": batch})).where(
            chats.c.chat_id > after
        )
        async with ledger.read() as conn:
            rows = [
                dict(r._mapping)
                for r in await conn.execute(query.order_by(None).order_by(chats.c.chat_id))
            ]
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = rows[-1]["chat_id"]


async def get_chat(ledger: Ledger, chat_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    async with ledger.read() as conn:
        row = (await conn.execute(sa.select(chats).where(chats.c.chat_id == chat_id))).first()
        if row is None:
            raise NotFound(f"no chat {chat_id!r} in the ledger")
        history = await conn.execute(
            sa.select(attempts)
            .where(attempts.c.chat_id == chat_id)
            .order_by(attempts.c.started_at, attempts.c.id)
        )
        return dict(row._mapping), [dict(a._mapping) for a in history]


async def list_lines(ledger: Ledger) -> list[dict[str, Any]]:
    async with ledger.read() as conn:
        return [
            dict(r._mapping) for r in await conn.execute(sa.select(lines).order_by(lines.c.number))
        ]


async def count_shares(ledger: Ledger) -> dict[str, int]:
    """Attempts by outcome (all time)."""
    async with ledger.read() as conn:
        rows = await conn.execute(
            sa.select(attempts.c.outcome, sa.func.count()).group_by(attempts.c.outcome)
        )
        return {outcome: int(n) for outcome, n in rows}
