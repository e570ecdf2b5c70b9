"""The ledger's side of lines and cards: typed Line records, and one transaction per claim,
answer and give-up of a card write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.config import CardConfig, LineConfig
from scheduler.core.card_budget import WriteBudget
from scheduler.core.card_plan import CardFields
from scheduler.core.line import CardTransition, Line, ObservedCard
from scheduler.core.status import CardState
from scheduler.ledger import cards as ledger_cards
from scheduler.ledger import lines as ledger_lines
from scheduler.ledger.engine import Ledger
from tests.factories import add_line

LINE = "+14155550100"
OTHER = "+14155550111"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)


async def _line(ledger: Ledger, number: str = LINE) -> Line:
    [line] = await ledger_lines.known(ledger, number)
    return line


async def test_configured_lines_read_back_as_records(ledger: Ledger) -> None:
    await ledger_lines.apply_configured(
        ledger,
        [
            LineConfig(number=OTHER, timezone="Europe/Paris"),
            LineConfig(number=LINE, card=CardConfig(first_name="Acme", last_name="Support")),
        ],
        NOON,
    )
    line = await _line(ledger)
    assert line.desired == CardFields("Acme", "Support")
    assert line.card is None
    assert line.card_state is CardState.unknown
    assert line.write_budget == WriteBudget()
    assert not line.paused
    assert [line.number for line in await ledger_lines.declared(ledger)] == [LINE]
    assert [line.number for line in await ledger_lines.known(ledger)] == [LINE, OTHER]
    assert (await _line(ledger, OTHER)).timezone == "Europe/Paris"
    assert await ledger_lines.known(ledger, "+14155550199") == []


async def test_a_claim_stores_the_budget_only_when_the_caller_reserves(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOON, state=CardState.absent)
    seen: list[Line] = []

    def nothing_due(line: Line) -> tuple[str, WriteBudget] | None:
        seen.append(line)
        return None

    assert await ledger_cards.claim_write(ledger, LINE, nothing_due) is None
    assert [line.number for line in seen] == [LINE]
    assert (await _line(ledger)).write_budget == WriteBudget()

    def spend(line: Line) -> tuple[str, WriteBudget] | None:
        return "claimed", line.write_budget.reserve(NOON, LEASE)

    assert await ledger_cards.claim_write(ledger, LINE, spend) == "claimed"
    assert (await _line(ledger)).write_budget == WriteBudget((NOON,), NOON + LEASE, 0)
    # An unknown line is never offered to the caller.
    assert await ledger_cards.claim_write(ledger, OTHER, spend) is None


async def test_an_accepted_write_records_the_card_and_its_state(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOON, state=CardState.absent)
    budget = WriteBudget().reserve(NOON, LEASE)
    await ledger_cards.claim_write(ledger, LINE, lambda line: ((), budget))
    finished = NOON + timedelta(seconds=2)
    card = ObservedCard(LINE, CardFields("Acme"), active=False)

    recorded = await ledger_cards.record_write(
        ledger,
        LINE,
        at=finished,
        settle=lambda stored: WriteBudget(stored.writes, None, 0),
        accepted=card,
        line_error=None,
    )

    assert recorded == (
        WriteBudget((NOON,), None, 0),
        [CardTransition(LINE, CardState.absent, CardState.pending)],
    )
    line = await _line(ledger)
    assert line.card_state is CardState.pending
    assert line.card == CardFields("Acme")
    assert line.card_written_at == finished
    assert line.last_error is None


async def test_a_failed_write_sets_the_line_error_from_the_settled_budget(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOON, state=CardState.absent)
    retry_at = NOON + timedelta(minutes=5)

    await ledger_cards.record_write(
        ledger,
        LINE,
        at=NOON,
        settle=lambda stored: WriteBudget(stored.writes, retry_at, 1),
        accepted=None,
        line_error=lambda settled: f"retry at {settled.next_write_at}",
    )
    line = await _line(ledger)
    assert line.last_error == f"retry at {retry_at}"
    assert line.write_budget.failures == 1

    # Without a line error the one recorded stays (a 2014 is followed up at once).
    await ledger_cards.record_write(
        ledger, LINE, at=NOON, settle=lambda stored: stored, accepted=None, line_error=None
    )
    assert (await _line(ledger)).last_error == f"retry at {retry_at}"
    assert (
        await ledger_cards.record_write(
            ledger, OTHER, at=NOON, settle=lambda stored: stored, accepted=None, line_error=None
        )
        is None
    )


async def test_only_one_give_up_per_write(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOON, state=CardState.absent)
    card = ObservedCard(LINE, CardFields("Acme"), active=False)
    await ledger_cards.record_write(
        ledger, LINE, at=NOON, settle=lambda stored: stored, accepted=card, line_error=None
    )
    later = NOON + timedelta(hours=1)
    assert await ledger_cards.give_up_activation(ledger, LINE, NOON, "not active", later)
    assert not await ledger_cards.give_up_activation(ledger, LINE, NOON, "not active", later)
    line = await _line(ledger)
    assert line.card_written_at is None
    assert line.last_error == "not active"
