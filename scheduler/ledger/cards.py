"""Contact cards in the ledger: what Linq says each line's card is, and the claim and the
record of each card write. One function per transaction.

A write is claimed before it is sent: :func:`claim_write` locks the line row, lets the caller
plan again from what is committed and spend one slot of the budget (with a short lease on the
card), so that two replicas (or the daemon and ``cards sync``) never write the same card twice.
:func:`record_write` stores the answer under the same lock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.card_budget import WriteBudget, dump_log, parse_log
from scheduler.core.line import (
    CardObservation,
    CardTransition,
    Line,
    ObservedCard,
    StoredCard,
    observe_card,
)
from scheduler.core.status import CardState
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import lines
from scheduler.ledger.lines import locked
from scheduler.ledger.recompute import mark_for_reschedule

__all__ = ["claim_write", "give_up_activation", "record_observations", "record_write"]

log = structlog.get_logger("scheduler.cards")

Claimed = TypeVar("Claimed")


async def record_observations(
    ledger: Ledger,
    cards: Sequence[ObservedCard],
    now: datetime,
    *,
    numbers: Collection[str] | None = None,
    seen_at: datetime | None = None,
) -> list[CardTransition]:
    """Store what ``GET /v3/contact_card`` said, in one transaction; return the state changes.

    ``numbers`` limits the update to those lines (a one-number read); without it, the answer
    is the whole account and every known line missing from it has no card (absent).
    ``seen_at`` is when the read was sent (see :func:`_observe`).
    """
    async with ledger.write() as conn:
        return await _observe(conn, cards, now, numbers=numbers, seen_at=seen_at)


async def claim_write(
    ledger: Ledger,
    number: str,
    reserve: Callable[[Line], tuple[Claimed, WriteBudget] | None],
) -> Claimed | None:
    """Lock the line and ask ``reserve`` (planning from the committed line) whether a write is
    due: if so, it returns the claim and the budget with the write spent, which is stored in
    the same transaction. None when the line is unknown or no write is due."""
    async with ledger.write() as conn:
        line = await locked(conn, number)
        if line is None:
            return None
        reserved = reserve(line)
        if reserved is None:
            return None
        claim, budget = reserved
        await conn.execute(
            sa.update(lines)
            .where(lines.c.number == number)
            .values(card_write_log=dump_log(budget.writes), card_next_write_at=budget.next_write_at)
        )
        return claim


async def record_write(
    ledger: Ledger,
    number: str,
    *,
    at: datetime,
    settle: Callable[[WriteBudget], WriteBudget],
    accepted: ObservedCard | None,
    line_error: Callable[[WriteBudget], str] | None,
) -> tuple[WriteBudget, list[CardTransition]] | None:
    """Record a write's answer under the line's lock, in one transaction: the budget as
    ``settle`` leaves it, the card Linq returned (``accepted``, for a write it took), or the
    line's error (``line_error`` of the settled budget; None keeps the line's error as is).
    Return the budget and the card's state changes; None when the line is unknown."""
    async with ledger.write() as conn:
        line = await locked(conn, number)
        if line is None:
            return None
        budget = settle(line.write_budget)
        values: dict[str, Any] = {
            "card_write_log": dump_log(budget.writes),
            "card_next_write_at": budget.next_write_at,
            "card_write_failures": budget.failures,
            "updated_at": at,
        }
        transitions: list[CardTransition] = []
        if accepted is not None:
            values["card_written_at"] = at
            values["last_error"] = None
            transitions = await _observe(conn, [accepted], at, numbers=[number])
            if accepted.active:
                values["card_written_at"] = None
        elif line_error is not None:
            values["last_error"] = line_error(budget)
        await conn.execute(sa.update(lines).where(lines.c.number == number).values(**values))
    return budget, transitions


async def give_up_activation(
    ledger: Ledger, number: str, written_at: datetime | None, message: str, now: datetime
) -> bool:
    """Stop awaiting the activation of the write made at ``written_at``, with ``message`` as the
    line's error; False when another replica gave up on this write first."""
    async with ledger.write() as conn:
        done = await conn.execute(
            sa.update(lines)
            .where(lines.c.number == number)
            .where(lines.c.card_written_at == written_at)
            .values(card_written_at=None, last_error=message, updated_at=now)
        )
    return done.rowcount == 1


def _observed_values(seen: CardObservation, now: datetime) -> dict[str, Any]:
    card = seen.card
    values: dict[str, Any] = {
        "card_state": seen.state,
        "card_checked_at": now,
        "card_first_name": card.fields.first_name if card else None,
        "card_last_name": card.fields.last_name if card else None,
        "card_image_url": card.fields.image_url if card else None,
        "updated_at": now,
    }
    if seen.transition is not None:
        values["card_state_since"] = now
        if seen.state == CardState.active:
            values["card_active_since"] = now
            values["last_error"] = None
    if seen.write_confirmed:
        # Activation confirmed: nothing left to poll for.
        values["card_written_at"] = None
    return values


async def _observe(
    conn: AsyncConnection,
    cards: Sequence[ObservedCard],
    now: datetime,
    *,
    numbers: Collection[str] | None = None,
    seen_at: datetime | None = None,
) -> list[CardTransition]:
    """Store observed cards inside the caller's transaction; return the state changes.

    ``seen_at`` is when the read was sent: a line written after that (by another replica, or
    by ``cards sync``) keeps what its write recorded, since this answer may predate the write.
    """
    seen_at = now if seen_at is None else seen_at
    by_number = {card.number: card for card in cards}
    query = sa.select(
        lines.c.number, lines.c.card_state, lines.c.card_written_at, lines.c.card_write_log
    )
    if numbers is not None:
        query = query.where(lines.c.number.in_(list(numbers)))
        by_number = {n: c for n, c in by_number.items() if n in numbers}
    known = {
        number: _stored_card(state, written_at, write_log)
        for number, state, written_at, write_log in await conn.execute(query)
    }
    transitions: list[CardTransition] = []
    # Rows that change the same columns go out as one executemany: a run touches every line.
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    scope = set(numbers) if numbers is not None else set(known) | set(by_number)
    for number in sorted(scope):
        card = by_number.get(number)
        stored = known.get(number)
        if stored is not None and stored.written_after(seen_at):
            log.debug("card.observation_stale", line=number)
            continue
        seen = observe_card(number, stored, card)
        if seen is None:
            continue
        if seen.transition is not None:
            transitions.append(seen.transition)
        values = _observed_values(seen, now)
        if stored is not None:
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


def _stored_card(state: str, written_at: datetime | None, write_log: str | None) -> StoredCard:
    writes = parse_log(write_log)
    return StoredCard(
        state=CardState(state),
        written_at=written_at,
        last_write_at=max(writes) if writes else None,
    )
