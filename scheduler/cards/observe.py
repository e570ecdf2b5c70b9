"""Card state: what Linq says each line's card is, and what that means for sharing.

Sharing for a line starts the moment its card is seen active and stops when it is not. The
desired card of each configured line is copied from the schedule file into the ledger, so that
every replica (and ``cards status``) plans from the same row.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import structlog

from scheduler.config import Schedule
from scheduler.core.card_plan import CardFields
from scheduler.core.line import CardTransition, ObservedCard
from scheduler.ledger import cards as ledger_cards
from scheduler.ledger import lines as ledger_lines
from scheduler.ledger.engine import Ledger
from scheduler.linq.types import ContactCard

__all__ = [
    "CardTransition",
    "log_transitions",
    "observed",
    "record_observed_cards",
    "sync_configured_lines",
]

log = structlog.get_logger("scheduler.cards")


def observed(card: ContactCard) -> ObservedCard:
    """Linq's answer as the ledger records it."""
    return ObservedCard(
        number=card.phone_number,
        fields=CardFields(card.first_name, card.last_name, card.image_url),
        active=card.is_active,
    )


async def sync_configured_lines(ledger: Ledger, schedule: Schedule, now: datetime) -> None:
    """Copy each configured line's zone and desired card into the ledger.

    Lines no longer in the schedule (or no longer declaring a card) become observed only. A
    line whose writes were refused for good (1xxx, 2005) gets a fresh chance when its desired
    card changes: the refusal was about the old card.
    """
    await ledger_lines.apply_configured(ledger, schedule.lines, now)


def log_transitions(transitions: Sequence[CardTransition]) -> None:
    for t in transitions:
        log.info("card.state_changed", line=t.line, before=t.before, after=t.after)
        if t.activated:
            log.info("card.activated", line=t.line)


async def record_observed_cards(
    ledger: Ledger,
    cards: Sequence[ContactCard],
    now: datetime,
    *,
    numbers: Collection[str] | None = None,
    seen_at: datetime | None = None,
) -> list[CardTransition]:
    """Store what GET /v3/contact_card said; return the lines whose state changed.

    Lines known to the ledger but missing from an account-wide answer have no card (absent).
    ``seen_at`` is when the read was sent: a line written after that keeps what its write
    recorded, since this answer may predate the write.
    """
    transitions = await ledger_cards.record_observations(
        ledger, [observed(card) for card in cards], now, numbers=numbers, seen_at=seen_at
    )
    log_transitions(transitions)
    return transitions
