"""The states of the ledger's things: a line's card, a chat, a share attempt's outcome.

They are stored as their string values; the ledger's tables default to them.
"""

from __future__ import annotations

from enum import StrEnum


class CardState(StrEnum):
    unknown = "unknown"
    absent = "absent"
    pending = "pending"
    active = "active"
    failed = "failed"


class ChatStatus(StrEnum):
    active = "active"
    paused = "paused"
    opted_out = "opted_out"
    # The recipient's handle is on our account's blocked list (2026).
    blocked = "blocked"
    gone = "gone"


# Statuses that follow the recipient's account-wide state (opt-out, block); paused and gone
# chats keep theirs (an operator's decision; a gone chat does not come back).
RECIPIENT_STATUSES = frozenset({ChatStatus.active, ChatStatus.opted_out, ChatStatus.blocked})


class Outcome(StrEnum):
    started = "started"
    shared = "shared"
    failed = "failed"
    rate_limited = "rate_limited"
    rejected = "rejected"
    ambiguous = "ambiguous"
    skipped = "skipped"


# Outcomes after which the chat counts as shared for the day (at-most-once wins).
SHARED_OUTCOMES = frozenset({Outcome.shared, Outcome.ambiguous})
