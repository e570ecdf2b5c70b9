"""What Linq's events and listings say, as typed records; and what writing them did.

Webhooks, backfill and import all turn what they read into these records before anything
reaches the ledger. Pure data: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# What recording one webhook event did: its effect written, its id already known, or an
# event type that changes nothing in the ledger.
ApplyResult = Literal["applied", "duplicate", "ignored"]


@dataclass(frozen=True, slots=True)
class ChatActivity:
    chat_id: str
    line: str | None = None
    recipients: tuple[str, ...] | None = None
    is_group: bool | None = None
    # The chat's own service (a chat object's ``service``).
    service: str | None = None
    # The service one message went over: proof of iMessage only, never of SMS.
    message_service: str | None = None
    # Members who left a group (participant.removed).
    removed_recipients: tuple[str, ...] | None = None
    outbound_at: datetime | None = None
    inbound_at: datetime | None = None
    opted_out: bool = False
    # When the recipient opted out (health_status.updated_at, or the STOP message's time).
    opted_out_at: datetime | None = None
    historical: bool = False


@dataclass(frozen=True, slots=True)
class LineStatus:
    """A ``phone_number.status_updated``: whether the line may deliver, as of ``changed_at``."""

    line: str
    status: str
    reputation: str
    changed_at: datetime

    @property
    def eligible(self) -> bool:
        # FLAGGED, or a CRITICAL reputation, means Linq refuses activity on the line (2027).
        return self.status == "ACTIVE" and self.reputation != "CRITICAL"


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    event_type: str
    activity: ChatActivity | None = None
    card_number: str | None = None
    line_status: LineStatus | None = None


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """Chats a merge created, changed, and found already as merged."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.created + other.created,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


@dataclass(frozen=True, slots=True)
class ActivityTimes:
    """The activity times the ledger knows of one chat (what a backfill compares against)."""

    chat_id: str
    first_outbound_at: datetime | None
    last_outbound_at: datetime | None
    last_inbound_at: datetime | None


@dataclass(frozen=True, slots=True)
class BackfillResume:
    """Where an unfinished backfill of one scope stopped: the cursor of its next page."""

    scope: str
    cursor: str
    chats_seen: int


@dataclass(frozen=True, slots=True)
class BackfillPage:
    """One page of a backfill written: the chats it listed, and the cursor that follows it
    (None at the end of the listing)."""

    scope: str
    listed: int
    next_cursor: str | None
