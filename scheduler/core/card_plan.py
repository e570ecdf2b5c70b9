"""What to do about one line's card: desired (schedule file) against observed (Linq). Pure.

- no desired card: observe only, never write;
- no card at Linq: create it (POST) with every desired field;
- fields differ: PATCH only those; ``image_url`` is sent only when the desired URL differs from
  the card's, since sending it makes Linq upload the image again;
- ``last_name`` / ``image_url`` left out of the schedule mean "leave as is": a PATCH cannot
  clear a field (omitted fields keep their value);
- a card that is not active is never PATCHed (Linq answers 404/2012): a change made while it
  is pending waits for activation and then goes out as one PATCH;
- a card left inactive by failed writes (a 4004 stores it and leaves it inactive) is written
  again with ``POST`` and every desired field (Linq accepts a POST on a pending card);
- card inactive after our write: poll until active, with backoff, and give up loudly after
  ``activation_timeout``. A card that ``GET`` does not list meanwhile is still ours, pending.
Every write waits for the number's budget (:mod:`scheduler.core.card_budget`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from scheduler.core.card_budget import WriteBudget
from scheduler.core.status import CardState


class Action(StrEnum):
    observe = "observe"  # no desired card
    unknown = "unknown"  # not read from Linq yet
    in_sync = "in_sync"  # active, as desired
    create = "create"
    patch = "patch"
    wait_budget = "wait_budget"  # a write is needed, not allowed yet
    blocked = "blocked"  # Linq refused this card for good; fix the schedule file
    awaiting_activation = "awaiting_activation"
    activation_timeout = "activation_timeout"
    pending = "pending"  # inactive, nothing for us to do: Linq has it


WRITES = frozenset({Action.create, Action.patch})


@dataclass(frozen=True, slots=True)
class CardFields:
    first_name: str
    last_name: str | None = None
    image_url: str | None = None

    @classmethod
    def of(
        cls, first_name: str | None, last_name: str | None, image_url: str | None
    ) -> CardFields | None:
        if first_name is None:
            return None
        return cls(first_name, last_name, image_url)

    def body(self) -> dict[str, str]:
        values = {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "image_url": self.image_url,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True, slots=True)
class CardView:
    """One line's card as the ledger has it."""

    desired: CardFields | None
    observed: CardFields | None
    state: str
    budget: WriteBudget = field(default_factory=WriteBudget)
    written_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CardPlan:
    action: Action
    fields: dict[str, str] = field(default_factory=dict)
    # When to look again: the next allowed write, the next activation poll, the give-up.
    at: datetime | None = None
    via: Action | None = None  # for wait_budget / blocked: the write that waits

    @property
    def writes(self) -> bool:
        return self.action in WRITES

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": str(self.action),
            "fields": sorted(self.fields),
            "at": self.at,
            "via": str(self.via) if self.via else None,
        }


def changed_fields(desired: CardFields, observed: CardFields) -> dict[str, str]:
    changes: dict[str, str] = {}
    if desired.first_name != observed.first_name:
        changes["first_name"] = desired.first_name
    if desired.last_name is not None and desired.last_name != observed.last_name:
        changes["last_name"] = desired.last_name
    if desired.image_url is not None and desired.image_url != observed.image_url:
        changes["image_url"] = desired.image_url
    return changes


def next_poll(written_at: datetime, now: datetime, first: timedelta, most: timedelta) -> datetime:
    """Poll at ``first``, then each time twice as long after the write, ``most`` apart at most."""
    elapsed = max(now - written_at, timedelta(0))
    step = min(max(elapsed, first), max(most, first))
    return now + step


def plan_card(
    view: CardView,
    now: datetime,
    *,
    activation_timeout: timedelta,
    poll_first: timedelta,
    poll_most: timedelta,
) -> CardPlan:
    desired = view.desired
    if desired is None:
        return CardPlan(Action.observe)
    if view.state == CardState.unknown:
        return CardPlan(Action.unknown)
    active = view.state == CardState.active
    if view.state == CardState.absent or view.observed is None:
        write, fields = Action.create, desired.body()
    elif active:
        write, fields = Action.patch, changed_fields(desired, view.observed)
    elif view.budget.failures > 0:
        # Left inactive by a failed write: set it up again (POST is accepted while pending).
        write, fields = Action.create, desired.body()
    else:
        # Pending after our write: no PATCH before activation; the change waits for it.
        write, fields = Action.patch, {}
    if fields:
        if view.budget.blocked:
            return CardPlan(Action.blocked, fields, None, via=write)
        allowed = view.budget.allowed_at(now)
        if allowed > now:
            return CardPlan(Action.wait_budget, fields, allowed, via=write)
        return CardPlan(write, fields, now)
    if active:
        return CardPlan(Action.in_sync)
    if view.written_at is not None:
        deadline = view.written_at + activation_timeout
        if now >= deadline:
            return CardPlan(Action.activation_timeout, at=None)
        poll = min(next_poll(view.written_at, now, poll_first, poll_most), deadline)
        return CardPlan(Action.awaiting_activation, at=poll)
    return CardPlan(Action.pending)
