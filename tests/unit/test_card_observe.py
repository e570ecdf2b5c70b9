"""What one read of the cards means for a line, decided without the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.core.card_plan import CardFields
from scheduler.core.line import CardTransition, ObservedCard, StoredCard, observe_card
from scheduler.core.status import CardState

LINE = "+14155550100"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ACTIVE = ObservedCard(LINE, CardFields("Acme"), active=True)
PENDING = ObservedCard(LINE, CardFields("Acme"), active=False)


def test_a_card_seen_active_after_our_write_ends_the_wait_for_activation() -> None:
    stored = StoredCard(CardState.pending, written_at=NOON, last_write_at=NOON)
    seen = observe_card(LINE, stored, ACTIVE)
    assert seen is not None
    assert seen.state is CardState.active
    assert seen.transition == CardTransition(LINE, CardState.pending, CardState.active)
    assert seen.transition.activated and seen.transition.activity_changed
    assert seen.write_confirmed


def test_a_pending_card_missing_from_the_listing_is_still_ours() -> None:
    stored = StoredCard(CardState.pending, written_at=NOON, last_write_at=NOON)
    assert observe_card(LINE, stored, None) is None


def test_a_card_gone_from_the_listing_is_absent() -> None:
    stored = StoredCard(CardState.active, written_at=None, last_write_at=None)
    seen = observe_card(LINE, stored, None)
    assert seen is not None
    assert seen.state is CardState.absent and seen.card is None
    assert seen.transition == CardTransition(LINE, CardState.active, CardState.absent)
    assert not seen.write_confirmed


def test_an_unchanged_state_is_no_transition() -> None:
    stored = StoredCard(CardState.pending, written_at=None, last_write_at=None)
    seen = observe_card(LINE, stored, PENDING)
    assert seen is not None
    assert seen.transition is None and not seen.write_confirmed
    first = observe_card(LINE, None, PENDING)
    assert first is not None
    assert first.transition == CardTransition(LINE, CardState.unknown, CardState.pending)


def test_a_read_sent_before_a_write_says_nothing_about_the_card() -> None:
    stored = StoredCard(CardState.absent, written_at=None, last_write_at=NOON)
    assert stored.written_after(NOON - timedelta(seconds=1))
    assert not stored.written_after(NOON)
    assert not StoredCard(CardState.absent, None, None).written_after(NOON)
