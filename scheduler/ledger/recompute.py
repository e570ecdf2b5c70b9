"""Recomputing next_share_at for many chats: when a line's card turns on or off, or the
schedule changes. Walks the chats in keyset order, one short transaction per batch."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from scheduler import clock
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, compute_next, select_chats_with_line
from scheduler.rule import Policy

BATCH = 1000


async def recompute_chats(
    ledger: Ledger, policy: Policy, *, line: str | None = None, now: datetime | None = None
) -> int:
    """Recompute every (or one line's) unclaimed chat; return how many changed."""
    changed = 0
    after = ""
    while True:
        at = now or clock.now()
        async with ledger.write() as conn:
            query = (
                select_chats_with_line()
                .where(chats.c.chat_id > after)
                .where(chats.c.claim_attempt_id.is_(None))
                .order_by(chats.c.chat_id)
                .limit(BATCH)
            )
            if line is not None:
                query = query.where(chats.c.line == line)
            rows = (await conn.execute(query)).all()
            if not rows:
                return changed
            updates = []
            for row in rows:
                nxt = compute_next(row, policy, at)
                if nxt != row.next_share_at:
                    updates.append({"b_chat_id": row.chat_id, "b_next": nxt})
            if updates:
                await conn.execute(
                    sa.update(chats)
                    .where(chats.c.chat_id == sa.bindparam("b_chat_id"))
                    .where(chats.c.claim_attempt_id.is_(None))
                    .values(next_share_at=sa.bindparam("b_next")),
                    updates,
                )
                changed += len(updates)
            after = rows[-1].chat_id
            if len(rows) < BATCH:
                return changed
