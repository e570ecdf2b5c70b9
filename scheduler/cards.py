"""Card state: what Linq says each line's card is, and what that means for sharing.

Sharing for a line starts the moment its card is seen active and stops when it is not.
(Creating and updating cards from the schedule file builds on this.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import structlog

from scheduler.config import Schedule
from scheduler.ledger.dialect import upsert
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import lines
from scheduler.ledger.models import CardState
from scheduler.linq.types import ContactCard

log = structlog.get_logger("scheduler.cards")


@dataclass(frozen=True, slots=True)
class CardTransition:
    line: str
    before: str
    after: str

    @property
    def activity_changed(self) -> bool:
        return (self.before == CardState.active) != (self.after == CardState.active)


def observed_state(card: ContactCard | None) -> CardState:
    if card is None:
        return CardState.absent
    return CardState.active if card.is_active else CardState.pending


async def sync_configured_lines(ledger: Ledger, schedule: Schedule, now: datetime) -> None:
    """Make sure every configured line has a row carrying its zone and desired card."""
    if not schedule.lines:
        return
    async with ledger.write() as conn:
        for line in schedule.lines:
            values = {
                "timezone": line.timezone,
                "desired_first_name": line.card.first_name if line.card else None,
                "desired_last_name": line.card.last_name if line.card else None,
                "desired_image_url": line.card.image_url if line.card else None,
                "updated_at": now,
            }
            stmt = upsert(lines, conn.dialect.name).values(
                number=line.number, card_state=CardState.unknown, created_at=now, **values
            )
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=[lines.c.number], set_=values)
            )


async def record_observed_cards(
    ledger: Ledger, cards: Sequence[ContactCard], now: datetime
) -> list[CardTransition]:
    """Store what GET /v3/contact_card said; return the lines whose state changed.

    Lines known to the ledger but missing from the answer have no card (absent).
    """
    by_number = {card.phone_number: card for card in cards}
    transitions: list[CardTransition] = []
    async with ledger.write() as conn:
        known = {
            row.number: row
            for row in await conn.execute(sa.select(lines.c.number, lines.c.card_state))
        }
        for number in sorted(set(known) | set(by_number)):
            card = by_number.get(number)
            state = observed_state(card)
            before = known[number].card_state if number in known else CardState.unknown
            values: dict[str, object] = {
                "card_state": state,
                "card_checked_at": now,
                "card_first_name": card.first_name if card else None,
                "card_last_name": card.last_name if card else None,
                "card_image_url": card.image_url if card else None,
                "updated_at": now,
            }
            if state != before:
                values["card_state_since"] = now
                if state == CardState.active:
                    values["card_active_since"] = now
                    values["last_error"] = None
                transitions.append(CardTransition(number, before, state))
            if number in known:
                await conn.execute(
                    sa.update(lines).where(lines.c.number == number).values(**values)
                )
            else:
                await conn.execute(sa.insert(lines).values(number=number, created_at=now, **values))
    for t in transitions:
        log.info("card.state_changed", line=t.line, before=t.before, after=t.after)
    return transitions
