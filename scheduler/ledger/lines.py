"""Our numbers in the ledger: what the schedule file declares for each, reading them as
:class:`~scheduler.core.line.Line` records, and the operator's pause."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.config import LineConfig
from scheduler.core.card_budget import BLOCKED, WriteBudget
from scheduler.core.card_plan import CardFields
from scheduler.core.line import Line
from scheduler.core.status import CardState, ChatStatus
from scheduler.errors import NotFound
from scheduler.ledger.dialect import upsert
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines

__all__ = ["apply_configured", "declared", "known", "line_of", "locked", "set_paused"]

_DESIRED = ("desired_first_name", "desired_last_name", "desired_image_url")


def line_of(row: sa.Row[Any]) -> Line:
    """The record of a full ``lines`` row."""
    return Line(
        number=row.number,
        paused=bool(row.paused),
        timezone=row.timezone,
        desired=CardFields.of(row.desired_first_name, row.desired_last_name, row.desired_image_url),
        card_state=CardState(row.card_state),
        card=CardFields.of(row.card_first_name, row.card_last_name, row.card_image_url),
        card_checked_at=row.card_checked_at,
        card_state_since=row.card_state_since,
        card_active_since=row.card_active_since,
        card_written_at=row.card_written_at,
        write_budget=WriteBudget.from_row(
            row.card_write_log, row.card_next_write_at, row.card_write_failures
        ),
        last_error=row.last_error,
        ineligible_since=row.ineligible_since,
        ineligible_reason=row.ineligible_reason,
        probe_at=row.probe_at,
    )


async def declared(ledger: Ledger) -> list[Line]:
    """The lines that declare a card (the card job brings those in line), by number."""
    async with ledger.read() as conn:
        rows = await conn.execute(
            sa.select(lines).where(lines.c.desired_first_name.is_not(None)).order_by(lines.c.number)
        )
        return [line_of(row) for row in rows]


async def known(ledger: Ledger, number: str | None = None) -> list[Line]:
    """Every line in the ledger (or the one ``number``, if there is one), by number."""
    query = sa.select(lines).order_by(lines.c.number)
    if number is not None:
        query = query.where(lines.c.number == number)
    async with ledger.read() as conn:
        return [line_of(row) for row in await conn.execute(query)]


async def locked(conn: AsyncConnection, number: str) -> Line | None:
    """The line, its row locked for the rest of the caller's transaction (PostgreSQL; SQLite
    writers are serialised anyway)."""
    query = sa.select(lines).where(lines.c.number == number)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return line_of(row) if row is not None else None


async def apply_configured(ledger: Ledger, configured: Sequence[LineConfig], now: datetime) -> None:
    """Copy each configured line's zone and desired card into the ledger, in one transaction.

    Lines no longer configured (or no longer declaring a card) become observed only. A line
    whose writes were refused for good (1xxx, 2005) gets a fresh chance when its desired card
    changes: the refusal was about the old card.
    """
    by_number = {line.number: line for line in configured}
    async with ledger.write() as conn:
        rows = {
            row.number: row
            for row in await conn.execute(
                sa.select(
                    lines.c.number, lines.c.card_next_write_at, *(lines.c[c] for c in _DESIRED)
                )
            )
        }
        for number, row in rows.items():
            if number not in by_number and row.desired_first_name is not None:
                await conn.execute(
                    sa.update(lines)
                    .where(lines.c.number == number)
                    .values(**dict.fromkeys(_DESIRED), updated_at=now)
                )
        for line in configured:
            values: dict[str, Any] = {
                "timezone": line.timezone,
                "desired_first_name": line.card.first_name if line.card else None,
                "desired_last_name": line.card.last_name if line.card else None,
                "desired_image_url": line.card.image_url if line.card else None,
                "updated_at": now,
            }
            stored = rows.get(line.number)
            if stored is not None:
                changed = any(getattr(stored, c) != values[c] for c in _DESIRED)
                if changed and stored.card_next_write_at == BLOCKED:
                    values.update(card_next_write_at=None, card_write_failures=0, last_error=None)
                await conn.execute(
                    sa.update(lines).where(lines.c.number == line.number).values(**values)
                )
                continue
            stmt = upsert(lines, conn.dialect.name).values(
                number=line.number, card_state=CardState.unknown, created_at=now, **values
            )
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=[lines.c.number], set_=values)
            )


async def set_paused(ledger: Ledger, number: str, paused: bool, now: datetime) -> int:
    """Pause or resume sharing for one line, in one transaction; return how many of its chats
    were touched. NotFound when the ledger has no such line.

    Pausing takes the line's unclaimed chats out of the due range at once. Resuming marks its
    active chats due now, so that the daemon's next pass re-checks each with its own schedule
    (and reschedules those not due): the rule, not this command, decides when they share.
    """
    async with ledger.write() as conn:
        found = await conn.execute(
            sa.update(lines).where(lines.c.number == number).values(paused=paused, updated_at=now)
        )
        if found.rowcount == 0:
            raise NotFound(f"no line {number} in the ledger")
        stmt = (
            sa.update(chats).where(chats.c.line == number).where(chats.c.claim_attempt_id.is_(None))
        )
        if paused:
            result = await conn.execute(
                stmt.where(chats.c.next_share_at.is_not(None)).values(next_share_at=None)
            )
        else:
            result = await conn.execute(
                stmt.where(chats.c.status == ChatStatus.active).values(next_share_at=now)
            )
        return int(result.rowcount or 0)
