"""Recomputing next_share_at for many chats: when a line's card turns on or off, or the
schedule changes. Walks the chats in keyset order, one short transaction per batch.

A walk can be cut short (a crash, a stop) with part of the chats still computed from the old
state of their line. So the change that calls for it marks the line (``reschedule_pending``, in
the change's own transaction) and only a finished walk clears the mark: whoever finds a marked
line (the card check, which also runs at start-up) walks its chats again. Walking twice is
harmless; every chat ends computed from its line as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler import clock
from scheduler.core.rule import Policy
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, compute_next, lines, select_chats_with_line

log = structlog.get_logger("scheduler.ledger")

BATCH = 1000


async def recompute_chats(
    ledger: Ledger,
    policy: Policy,
    *,
    line: str | None = None,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Recompute every (or one line's) unclaimed chat; return how many changed.

    With ``stop``, the walk ends early once it is set (between two batches).
    """
    changed = 0
    after = ""
    while stop is None or not stop.is_set():
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
    return changed


async def mark_for_reschedule(conn: AsyncConnection, numbers: Collection[str] | None) -> None:
    """Mark lines (all with ``None``) whose chats need recomputing, in the caller's transaction."""
    stmt = sa.update(lines).values(reschedule_pending=lines.c.reschedule_pending + 1)
    if numbers is not None:
        if not numbers:
            return
        stmt = stmt.where(lines.c.number.in_(list(numbers)))
    await conn.execute(stmt)


async def mark_all_for_reschedule(ledger: Ledger) -> None:
    """Every line's chats need recomputing (the sharing rule changed)."""
    async with ledger.write() as conn:
        await mark_for_reschedule(conn, None)


async def reschedule_marked_lines(
    ledger: Ledger,
    policy: Policy,
    *,
    numbers: Collection[str] | None = None,
    stop: asyncio.Event | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Recompute the chats of every marked line (of ``numbers`` only, if given) and clear its
    mark; return the chats changed per line. A line marked again meanwhile stays marked."""
    query = sa.select(lines.c.number, lines.c.reschedule_pending).where(
        lines.c.reschedule_pending > 0
    )
    if numbers is not None:
        if not numbers:
            return {}
        query = query.where(lines.c.number.in_(list(numbers)))
    async with ledger.read() as conn:
        marked = list(await conn.execute(query.order_by(lines.c.number)))
    done: dict[str, int] = {}
    for row in marked:
        if stop is not None and stop.is_set():
            break
        changed = await recompute_chats(ledger, policy, line=row.number, now=now, stop=stop)
        if stop is not None and stop.is_set():
            break  # maybe cut short: the mark stays for the next run
        async with ledger.write() as conn:
            await conn.execute(
                sa.update(lines)
                .where(lines.c.number == row.number)
                .where(lines.c.reschedule_pending == row.reschedule_pending)
                .values(reschedule_pending=0)
            )
        done[row.number] = changed
    return done
