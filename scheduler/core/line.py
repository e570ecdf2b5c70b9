"""One of our numbers as the ledger knows it: the card it should carry, the card Linq says it
carries, the card write budget, and whether Linq lets it share. Records only, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.core.card_budget import WriteBudget
from scheduler.core.card_plan import CardFields
from scheduler.core.status import CardState


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


@dataclass(frozen=True, slots=True)
class StoredCard:
    """What the ledger holds of a line's card when a read's answer comes in."""

    state: CardState
    # The last write Linq accepted, while its activation is awaited.
    written_at: datetime | None
    # The latest write stamp of the budget (a write in flight is stamped before it is sent).
    last_write_at: datetime | None

    def written_after(self, seen_at: datetime) -> bool:
        """Whether a write (by this or another process) came after a read sent at
        ``seen_at``: that read may predate the write, and says nothing about the card."""
        return self.last_write_at is not None and self.last_write_at > seen_at


@dataclass(frozen=True, slots=True)
class CardObservation:
    """What a read means for one line: its card and state from now on."""

    card: ObservedCard | None
    state: CardState
    # Set when the state changed.
    transition: CardTransition | None
    # The card our last write made is seen active: its activation is no longer awaited.
    write_confirmed: bool


def observe_card(
    number: str, stored: StoredCard | None, card: ObservedCard | None
) -> CardObservation | None:
    """The line's card after a read that lists ``card`` for it (None: lists no card for it).
    None when the read changes nothing: ``GET`` lists active cards only, so a card our write
    left pending is missing from it, not gone (posting it again would only spend the budget).
    """
    before = stored.state if stored is not None else CardState.unknown
    if card is None and before == CardState.pending:
        return None
    state = card.state if card is not None else CardState.absent
    return CardObservation(
        card=card,
        state=state,
        transition=CardTransition(number, before, state) if state != before else None,
        write_confirmed=state == CardState.active
        and stored is not None
        and stored.written_at is not None,
    )


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
