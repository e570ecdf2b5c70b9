"""One of our numbers as the ledger knows it: the card it should carry, the card Linq says it
carries, the card write budget, and whether Linq lets it share. Records only, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.cards.budget import WriteBudget
from scheduler.cards.plan import CardFields
from scheduler.ledger.models import CardState


@dataclass(frozen=True, slots=True)
class ObservedCard:
    """A card as ``GET /v3/contact_card`` (or a write's answer) reports it."""

    number: str
    fields: CardFields
    active: bool

    @property
    def state(self) -> CardState:
        return CardState.active if self.active else CardState.pending


@dataclass(frozen=True, slots=True)
class Line:
    number: str
    paused: bool
    timezone: str | None
    # From the schedule file (None: observed only, never written).
    desired: CardFields | None
    card_state: CardState
    # The card's fields as last observed or written (None: never seen, or gone).
    card: CardFields | None
    card_checked_at: datetime | None
    card_state_since: datetime | None
    card_active_since: datetime | None
    # The last write Linq accepted, while its activation is awaited.
    card_written_at: datetime | None
    write_budget: WriteBudget
    last_error: str | None
    # Linq refuses activity on the line (2027, FLAGGED): paused by Linq until it resumes.
    ineligible_since: datetime | None
    ineligible_reason: str | None
    probe_at: datetime | None


@dataclass(frozen=True, slots=True)
class CardTransition:
    """A line's card changed state (``unknown``, ``absent``, ``pending``, ``active``)."""

    line: str
    before: CardState
    after: CardState

    @property
    def activity_changed(self) -> bool:
        return (self.before == CardState.active) != (self.after == CardState.active)

    @property
    def activated(self) -> bool:
        return self.after == CardState.active and self.before != CardState.active


# Line eligibility: while Linq refuses the line (2027), one share (the probe) is tried at a
# time, the wait doubling with each refusal up to the cap.
PROBE_FIRST = timedelta(minutes=5)
PROBE_MAX = timedelta(hours=1)


def probe_backoff(previous_seconds: int) -> timedelta:
    """The wait before the next probe: the first, then doubling up to the cap."""
    if previous_seconds <= 0:
        return PROBE_FIRST
    return min(timedelta(seconds=previous_seconds * 2), PROBE_MAX)


@dataclass(frozen=True, slots=True)
class LineEligibility:
    """A line Linq refuses activity on, since when and why, and its next probe."""

    number: str
    ineligible_since: datetime
    reason: str | None
    probe_at: datetime | None
    backoff: timedelta
