"""Card state: what Linq says each line's card is, and what that means for sharing.

Sharing for a line starts the moment its card is seen active and stops when it is not. The
desired card of each configured line is copied from the schedule file into the ledger, so that
every replica (and ``cards status``) plans from the same row.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.config import Schedule
from scheduler.core.card_budget import BLOCKED, parse_log
from scheduler.core.status import CardState
from scheduler.ledger.dialect import upsert
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import lines
from scheduler.ledger.recompute import mark_for_reschedule
from scheduler.linq.types import ContactCard

log = structlog.get_logger("scheduler.cards")

_DESIRED = ("desired_first_name", "desired_last_name", "desired_image_url")


@dataclass(frozen=True, slots=True)
class CardTransition:
    line: str
    before: str
    after: str

    @property
    def activity_changed(self) -> bool:
        return (self.before == CardState.active) != (self.after == CardState.active)

    @property
    def activated(self) -> bool:
        return self.after == CardState.active and self.before != CardState.active


def observed_state(card: ContactCard | None) -> CardState:
    if card is None:
        return CardState.absent
    return CardState.active if card.is_active else CardState.pending


async def sync_configured_lines(ledger: Ledger, schedule: Schedule, now: datetime) -> None:
    """Copy each configured line's zone and desired card into the ledger.

    Lines no longer in the schedule (or no longer declaring a card) become observed only. A
    line whose writes were refused for good (1xxx, 2005) gets a fresh chance when its desired
    card changes: the refusal was about the old card.
    """
    configured = {line.number: line for line in schedule.lines}
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
            if number not in configured and row.desired_first_name is not None:
                await conn.execute(
                    sa.update(lines)
                    .where(lines.c.number == number)
                    .values(**dict.fromkeys(_DESIRED), updated_at=now)
                )
        for line in schedule.lines:
            values: dict[str, Any] = {
                "timezone": line.timezone,
                "desired_first_name": line.card.first_name if line.card else None,
                "desired_last_name": line.card.last_name if line.card else None,
                "desired_image_url": line.card.image_url if line.card else None,
                "updated_at": now,
            }
            known = rows.get(line.number)
            if known is not None:
                changed = any(getattr(known, c) != values[c] for c in _DESIRED)
                if changed and known.card_next_write_at == BLOCKED:
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


def observed_values(card: ContactCard | None, now: datetime) -> dict[str, Any]:
    return {
        "card_state": observed_state(card),
        "card_checked_at": now,
        "card_first_name": card.first_name if card else None,
        "card_last_name": card.last_name if card else None,
        "card_image_url": card.image_url if card else None,
        "updated_at": now,
    }


async def observe_in(
    conn: AsyncConnection,
    cards: Sequence[ContactCard],
    now: datetime,
    *,
    numbers: Collection[str] | None = None,
    seen_at: datetime | None = None,
) -> list[CardTransition]:
    """Store observed cards inside the caller's transaction; return the state changes.

    ``numbers`` limits the update to those lines (a one-number read); without it, the answer
    is the whole account and every known line missing from it has no card. ``seen_at`` is
    when the read was sent: a line written after that (by another replica, or by ``cards
    sync``) keeps what its write recorded, since this answer may predate the write.
    """
    seen_at = now if seen_at is None else seen_at
    by_number = {card.phone_number: card for card in cards}
    query = sa.select(
        lines.c.number, lines.c.card_state, lines.c.card_written_at, lines.c.card_write_log
    )
    if numbers is not None:
        query = query.where(lines.c.number.in_(list(numbers)))
        by_number = {n: c for n, c in by_number.items() if n in numbers}
    known = {row.number: row for row in await conn.execute(query)}
    transitions: list[CardTransition] = []
    # Rows that change the same columns go out as one executemany: a run touches every line.
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    scope = set(numbers) if numbers is not None else set(known) | set(by_number)
    for number in sorted(scope):
        card = by_number.get(number)
        row = known.get(number)
        if row is not None and any(w > seen_at for w in parse_log(row.card_write_log)):
            log.debug("card.observation_stale", line=number)
            continue
        if card is None and row is not None and row.card_state == CardState.pending:
            # GET lists active cards only: a card our write left pending is missing from it,
            # not gone. Posting it again would only spend the budget.
            continue
        values = observed_values(card, now)
        state = values["card_state"]
        before = row.card_state if row is not None else CardState.unknown
        if state != before:
            values["card_state_since"] = now
            if state == CardState.active:
                values["card_active_since"] = now
                values["last_error"] = None
            transitions.append(CardTransition(number, before, state))
        if state == CardState.active and row is not None and row.card_written_at is not None:
            # Activation confirmed: nothing left to poll for.
            values["card_written_at"] = None
        if row is not None:
            params = {f"b_{k}": v for k, v in values.items()}
            updates.setdefault(tuple(sorted(values)), []).append({"b_number": number, **params})
        elif card is not None:
            await conn.execute(sa.insert(lines).values(number=number, created_at=now, **values))
    for columns, batch in updates.items():
        await conn.execute(
            sa.update(lines)
            .where(lines.c.number == sa.bindparam("b_number"))
            .values({c: sa.bindparam(f"b_{c}") for c in columns}),
            batch,
        )
    # Committed with the change: a reschedule cut short is found and finished later.
    await mark_for_reschedule(conn, [t.line for t in transitions if t.activity_changed])
    return transitions


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
    """
    async with ledger.write() as conn:
        transitions = await observe_in(conn, cards, now, numbers=numbers, seen_at=seen_at)
    log_transitions(transitions)
    return transitions
