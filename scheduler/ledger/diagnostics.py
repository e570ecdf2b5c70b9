"""What ``doctor`` asks of the ledger: does it answer, and what state is each line in."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.line_eligibility import LineEligibility, ineligible_lines

__all__ = ["LineStanding", "line_standings", "ping"]


@dataclass(frozen=True, slots=True)
class LineStanding:
    """One line as the ledger knows it: its chats, and the states that keep it from sharing."""

    number: str
    chats: int = 0
    paused: bool = False
    ineligible: LineEligibility | None = None


async def ping(ledger: Ledger) -> None:
    """One round trip to the database; raises what the driver raises when it does not answer."""
    async with ledger.read() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def line_standings(ledger: Ledger) -> list[LineStanding]:
    """Every line with a row or with chats, by number."""
    async with ledger.read() as conn:
        paused = {
            str(row.number): bool(row.paused)
            for row in await conn.execute(sa.select(lines.c.number, lines.c.paused))
        }
        counts: dict[str, int] = {}
        for number, n in await conn.execute(
            sa.select(chats.c.line, sa.func.count())
            .where(chats.c.line.is_not(None))
            .group_by(chats.c.line)
        ):
            counts[str(number)] = int(n)
        ineligible = {line.number: line for line in await ineligible_lines(conn)}
    return [
        LineStanding(
            number=number,
            chats=counts.get(number, 0),
            paused=paused.get(number, False),
            ineligible=ineligible.get(number),
        )
        for number in sorted(set(paused) | set(counts))
    ]
