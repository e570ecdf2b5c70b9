"""A line's chats are rescheduled by a walk that a crash or a stop may cut short: the line
stays marked until a walk finishes, so no chat is left computed from the line's old state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import scheduler.ledger.recompute as recompute_module
from scheduler.cards.observe import record_observed_cards
from scheduler.core.status import CardState
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.recompute import (
    BATCH,
    mark_all_for_reschedule,
    recompute_chats,
    reschedule_marked_lines,
)
from scheduler.linq.types import ContactCard
from tests.factories import add_chats, add_line, policy

LINE = "+14155550100"
OTHER = "+14155550111"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def _pending(ledger: Ledger) -> dict[str, int]:
    async with ledger.read() as conn:
        rows = await conn.execute(sa.select(lines.c.number, lines.c.reschedule_pending))
        return {row.number: row.reschedule_pending for row in rows}


async def _without_next_share(ledger: Ledger) -> int:
    async with ledger.read() as conn:
        query = sa.select(sa.func.count()).where(chats.c.next_share_at.is_(None))
        return int((await conn.execute(query)).scalar_one())


async def _activate(ledger: Ledger) -> None:
    card = ContactCard(phone_number=LINE, first_name="Acme", is_active=True)
    transitions = await record_observed_cards(ledger, [card], NOON, numbers=[LINE])
    assert [t.activated for t in transitions] == [True]


async def test_the_card_turning_active_marks_the_line_in_the_same_transaction(
    ledger: Ledger,
) -> None:
    await add_line(ledger, LINE, NOON, state=CardState.absent)
    await add_line(ledger, OTHER, NOON, state=CardState.absent)
    await _activate(ledger)
    assert await _pending(ledger) == {LINE: 1, OTHER: 0}
    # Seen active again: no change of activity, no new mark.
    await _activate_again_is_no_transition(ledger)
    assert await _pending(ledger) == {LINE: 1, OTHER: 0}


async def _activate_again_is_no_transition(ledger: Ledger) -> None:
    card = ContactCard(phone_number=LINE, first_name="Acme", is_active=True)
    assert await record_observed_cards(ledger, [card], NOON, numbers=[LINE]) == []


async def test_a_walk_cut_short_leaves_the_mark_and_the_next_one_finishes(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = policy()
    await add_line(ledger, LINE, NOON, state=CardState.absent)
    await add_chats(
        ledger, LINE, BATCH * 2 + 10, now=NOON, first_outbound_at=NOON - timedelta(days=1)
    )
    await _activate(ledger)
    assert await _without_next_share(ledger) == BATCH * 2 + 10

    stop = asyncio.Event()
    walked = recompute_chats

    async def stop_after_first_batch(*args: object, **kwargs: object) -> int:
        # The stop arrives while the first batch is written: the walk ends after it.
        stop.set()
        return await walked(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(recompute_module, "recompute_chats", stop_after_first_batch)
    done = await reschedule_marked_lines(ledger, pol, stop=stop, now=NOON)
    monkeypatch.undo()
    assert done == {}
    assert await _pending(ledger) == {LINE: 1}

    # What a restart does: find the marked line and finish its chats.
    done = await reschedule_marked_lines(ledger, pol, now=NOON)
    assert done == {LINE: BATCH * 2 + 10}
    assert await _pending(ledger) == {LINE: 0}
    assert await _without_next_share(ledger) == 0


async def test_a_stop_between_batches_ends_the_walk(ledger: Ledger) -> None:
    pol = policy()
    await add_line(ledger, LINE, NOON)
    await add_chats(ledger, LINE, BATCH + 5, now=NOON, first_outbound_at=NOON - timedelta(days=1))
    stop = asyncio.Event()
    stop.set()
    assert await recompute_chats(ledger, pol, line=LINE, now=NOON, stop=stop) == 0
    assert await _without_next_share(ledger) == BATCH + 5


async def test_a_line_marked_again_during_the_walk_stays_marked(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = policy()
    await add_line(ledger, LINE, NOON)
    await add_chats(ledger, LINE, 3, now=NOON, first_outbound_at=NOON - timedelta(days=1))
    await mark_all_for_reschedule(ledger)
    walked = recompute_chats

    async def marked_meanwhile(*args: object, **kwargs: object) -> int:
        # Another change of the card commits while this walk runs: its own walk must follow.
        await mark_all_for_reschedule(ledger)
        return await walked(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(recompute_module, "recompute_chats", marked_meanwhile)
    await reschedule_marked_lines(ledger, pol, now=NOON)
    monkeypatch.undo()
    assert await _pending(ledger) == {LINE: 2}
    await reschedule_marked_lines(ledger, pol, now=NOON)
    assert await _pending(ledger) == {LINE: 0}
    assert await _without_next_share(ledger) == 0
