"""The read side of cards, for ``share-scheduler cards status``, and pausing a line."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scheduler.cards.sync import view_of
from scheduler.config import CardsConfig
from scheduler.core.card_budget import WriteBudget
from scheduler.core.card_plan import CardFields, plan_card
from scheduler.core.status import CardState, ChatStatus
from scheduler.errors import NotFound
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines


def _fields(card: CardFields | None) -> dict[str, Any] | None:
    if card is None:
        return None
    return {"first_name": card.first_name, "last_name": card.last_name, "image_url": card.image_url}


def line_status(row: Any, config: CardsConfig, now: datetime) -> dict[str, Any]:
    view = view_of(row)
    budget: WriteBudget = view.budget
    plan = plan_card(
        view,
        now,
        activation_timeout=config.activation_timeout,
        poll_first=config.activation_poll,
        poll_most=config.check_interval,
    )
    managed = view.desired is not None
    return {
        "line": row.number,
        "paused": bool(row.paused),
        # Linq refuses activity on the line (2027, FLAGGED): paused by Linq until it resumes.
        "ineligible": row.ineligible_since is not None,
        "ineligible_since": row.ineligible_since,
        "ineligible_reason": row.ineligible_reason,
        "probe_at": row.probe_at,
        "managed": managed,
        "desired": _fields(view.desired),
        "observed": _fields(view.observed),
        "state": row.card_state,
        "active": row.card_state == CardState.active,
        "since": row.card_state_since,
        "active_since": row.card_active_since,
        "checked_at": row.card_checked_at,
        "last_error": row.last_error,
        "plan": str(plan.action),
        "pending_fields": sorted(plan.fields),
        "writes_last_10m": len(budget.recent(now)),
        "write_failures": budget.failures,
        "write_blocked": budget.blocked,
        # None when no write is needed or possible; otherwise the earliest allowed instant.
        "next_write_at": None if budget.blocked or not managed else budget.allowed_at(now),
        "awaiting_activation_since": row.card_written_at,
    }


async def card_status(
    ledger: Ledger, config: CardsConfig, now: datetime, line: str | None = None
) -> list[dict[str, Any]]:
    query = sa.select(lines).order_by(lines.c.number)
    if line is not None:
        query = query.where(lines.c.number == line)
    async with ledger.read() as conn:
        rows = list(await conn.execute(query))
    if line is not None and not rows:
        raise NotFound(f"no line {line} in the ledger")
    return [line_status(row, config, now) for row in rows]


async def set_line_paused(ledger: Ledger, number: str, paused: bool, now: datetime) -> int:
    """Pause or resume sharing for one line; return how many of its chats were touched.

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
