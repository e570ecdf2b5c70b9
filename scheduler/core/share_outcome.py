"""What a share call's result means for the chat, its line and the daemon. Pure code.

The table follows linq-api.md: 2012 re-checks the card without burning the chat's day, 2024
opts the recipient out (on every chat, every line), 2026 marks the recipient blocked, 2027
pauses the line (not the chat), 2001 retires the chat, 2004 stops all API work, 2005 marks the
line broken.
A call that may have reached Linq but gave no answer counts as shared: a missed day is cheap,
a double share is spam.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.core.status import CardState, ChatStatus, Outcome
from scheduler.errors import (
    AccessDenied,
    BadRequest,
    CardNotActive,
    ChatNotFound,
    HandleBlocked,
    LineIneligible,
    LinqError,
    LinqTransportError,
    OptedOut,
    RateLimited,
    Unauthorized,
)

DEFAULT_RETRY_AFTER = timedelta(seconds=60)
BAD_REQUEST_BACKOFF = timedelta(hours=24)
MAX_FAILURE_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    counts_as_shared: bool = False
    chat_status: ChatStatus | None = None
    not_before: datetime | None = None
    failed: bool = False  # counts towards the chat's consecutive failures
    line_card_state: CardState | None = None
    line_error: str | None = None
    stop_all: bool = False
    error: str | None = None
    # Account-wide facts about the chat's recipient (2024, 2026) and its line (2027).
    recipient_opted_out: bool = False
    recipient_blocked: bool = False
    line_ineligible: bool = False


def describe(exc: LinqError) -> str:
    return str(exc)[:500]


def decide(
    error: LinqError | None,
    *,
    now: datetime,
    maybe_applied: bool,
    consecutive_failures: int,
    failure_backoff: timedelta,
) -> Decision:
    """Map the final result of a claim's calls (None = success) to a decision.

    ``maybe_applied`` is true when an earlier try of this claim may have reached Linq without
    an answer (read timeout, reset after sending).
    """
    if error is None:
        return Decision(Outcome.shared, counts_as_shared=True)
    text = describe(error)
    if isinstance(error, RateLimited):
        if maybe_applied:
            # Linq allows one share per chat per 5 minutes: a 429 right after a lost answer
            # means the lost call landed.
            return Decision(Outcome.ambiguous, counts_as_shared=True, error=text)
        wait = timedelta(seconds=error.retry_after) if error.retry_after else DEFAULT_RETRY_AFTER
        return Decision(Outcome.rate_limited, not_before=now + wait, error=text)
    if maybe_applied or (isinstance(error, LinqTransportError) and error.sent):
        return Decision(Outcome.ambiguous, counts_as_shared=True, error=text)
    if isinstance(error, CardNotActive):
        return Decision(
            # Not active, and GET cannot tell a pending card from a missing one: unknown
            # until the card is read again.
            Outcome.rejected,
            line_card_state=CardState.unknown,
            line_error=text,
            error=text,
        )
    if isinstance(error, ChatNotFound):
        return Decision(Outcome.rejected, chat_status=ChatStatus.gone, error=text)
    if isinstance(error, OptedOut):
        return Decision(
            Outcome.rejected,
            chat_status=ChatStatus.opted_out,
            recipient_opted_out=True,
            error=text,
        )
    if isinstance(error, HandleBlocked):
        return Decision(
            Outcome.rejected, chat_status=ChatStatus.blocked, recipient_blocked=True, error=text
        )
    if isinstance(error, LineIneligible):
        return Decision(Outcome.rejected, line_ineligible=True, error=text)
    if isinstance(error, Unauthorized):
        return Decision(Outcome.failed, stop_all=True, error=text)
    if isinstance(error, AccessDenied):
        return Decision(
            Outcome.rejected, line_card_state=CardState.failed, line_error=text, error=text
        )
    if isinstance(error, BadRequest):
        return Decision(Outcome.rejected, not_before=now + BAD_REQUEST_BACKOFF, error=text)
    backoff = min(failure_backoff * (2 ** min(consecutive_failures, 10)), MAX_FAILURE_BACKOFF)
    return Decision(Outcome.failed, not_before=now + backoff, failed=True, error=text)
