"""The read side of cards, for ``share-scheduler cards status``, and pausing a line."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scheduler.cards.sync import view_of
from scheduler.config import CardsConfig
from scheduler.core.card_budget import WriteBudget
from scheduler.core.card_plan import CardFields, plan_card
from scheduler.core.line import Line
from scheduler.core.status import CardState
from scheduler.errors import NotFound
from scheduler.ledger import lines as ledger_lines
from scheduler.ledger.engine import Ledger


def _fields(card: CardFields | None) -> dict[str, Any] | None:
    if card is None:
        return None
    return {"first_name": card.first_name, "last_name": card.last_name, "image_url": card.image_url}


def line_status(line: Line, config: CardsConfig, now: datetime) -> dict[str, Any]:
    view = view_of(line)
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
        "line": line.number,
        "paused": line.paused,
        # Linq refuses activity on the line (2027, FLAGGED): paused by Linq until it resumes.
        "ineligible": line.ineligible_since is not None,
        "ineligible_since": line.ineligible_since,
        "ineligible_reason": line.ineligible_reason,
        "probe_at": line.probe_at,
        "managed": managed,
        "desired": _fields(view.desired),
        "observed": _fields(view.observed),
        "state": line.card_state,
        "active": line.card_state == CardState.active,
        "since": line.card_state_since,
        "active_since": line.card_active_since,
        "checked_at": line.card_checked_at,
        "last_error": line.last_error,
        "plan": str(plan.action),
        "pending_fields": sorted(plan.fields),
        "writes_last_10m": len(budget.recent(now)),
        "write_failures": budget.failures,
        "write_blocked": budget.blocked,
        # None when no write is needed or possible; otherwise the earliest allowed instant.
        "next_write_at": None if budget.blocked or not managed else budget.allowed_at(now),
        "awaiting_activation_since": line.card_written_at,
    }


async def card_status(
    ledger: Ledger, config: CardsConfig, now: datetime, line: str | None = None
) -> list[dict[str, Any]]:
    found = await ledger_lines.known(ledger, line)
    if line is not None and not found:
        raise NotFound(f"no line {line} in the ledger")
    return [line_status(one, config, now) for one in found]


async def set_line_paused(ledger: Ledger, number: str, paused: bool, now: datetime) -> int:
    """Pause or resume sharing for one line; return how many of its chats were touched.

    Pausing takes the line's unclaimed chats out of the due range at once. Resuming marks its
    active chats due now, so that the daemon's next pass re-checks each with its own schedule
    (and reschedules those not due): the rule, not this command, decides when they share.
    """
    return await ledger_lines.set_paused(ledger, number, paused, now)
