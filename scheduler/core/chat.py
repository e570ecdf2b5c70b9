"""The records of a chat on the share path: its state as the claim reads it, a claim, what the
calls of a claim did, and the writes that close an attempt and update the chat.

Plain frozen values: the ledger maps its rows to them, the pass passes them between its
select, call and record steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from scheduler.core.share_outcome import Decision


class ChatState(NamedTuple):
    """What the rule and the claim protocol read of one chat and its line.

    A named tuple rather than a frozen dataclass: a claim maps hundreds of rows at a time, and
    a tuple is built in one C call where a frozen dataclass sets each field through
    ``object.__setattr__`` (about 7 us a row, a tenth of the claim's own cost).
    """

    chat_id: str
    line: str | None
    recipients: str | None
    is_group: bool
    service: str | None
    first_outbound_at: datetime | None
    last_outbound_at: datetime | None
    last_inbound_at: datetime | None
    last_shared_at: datetime | None
    share_count: int
    status: str
    not_before: datetime | None
    consecutive_failures: int
    next_share_at: datetime | None
    claim_attempt_id: int | None
    claim_expires_at: datetime | None
    last_error: str | None
    line_card_state: str | None
    line_paused: bool | None
    line_timezone: str | None
    line_probe_at: datetime | None
    # Who holds the claim (an instance id), when it was taken and whether forced: with
    # ``claim_attempt_id``, the claim's intent, from which an expired claim's attempt is written.
    claimed_by: str | None = None
    claim_started_at: datetime | None = None
    claim_forced: bool | None = None


class Claim(NamedTuple):
    """A chat claimed for one share: its intent (the chat's claim columns, with the attempt
    id ``attempt_id`` reserved for it) is committed; its attempt row is not written yet.

    A named tuple, as ``ChatState``: a claim builds hundreds at a time."""

    chat_id: str
    line: str | None
    attempt_id: int
    started_at: datetime
    consecutive_failures: int
    instance: str = ""
    forced: bool = False


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What the calls of one claim did, and what it means."""

    claim: Claim
    decision: Decision
    finished_at: datetime
    tries: int
    http_status: int | None = None
    error_code: int | None = None
    trace_id: str | None = None
    latency_ms: float | None = None


@dataclass(slots=True)
class ClaimResult:
    """One claim transaction: the claims taken, and the chats it resolved or rescheduled."""

    claims: list[Claim] = field(default_factory=list)
    ambiguous: int = 0
    rescheduled: int = 0


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """A finished attempt's row, written once with its outcome (an id already written, by an
    ambiguous resolution elsewhere, keeps its verdict)."""

    attempt_id: int
    chat_id: str
    line: str | None
    started_at: datetime
    instance: str
    forced: bool
    outcome: str
    finished_at: datetime
    tries: int
    http_status: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    trace_id: str | None = None
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ChatUpdate:
    """A chat's facts after an outcome, and when it is due next; the claim is dropped."""

    chat_id: str
    last_shared_at: datetime | None
    share_count: int
    status: str
    not_before: datetime | None
    consecutive_failures: int
    last_error: str | None
    next_share_at: datetime | None


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """Every column of one chat, in the ledger's order: what ``ledger list`` and ``ledger
    show`` print."""

    chat_id: str
    line: str | None
    recipients: str
    is_group: bool
    service: str | None
    first_outbound_at: datetime | None
    last_outbound_at: datetime | None
    last_inbound_at: datetime | None
    last_shared_at: datetime | None
    share_count: int
    status: str
    not_before: datetime | None
    consecutive_failures: int
    next_share_at: datetime | None
    claimed_by: str | None
    claim_attempt_id: int | None
    claim_expires_at: datetime | None
    claim_started_at: datetime | None
    claim_forced: bool | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One share attempt as the ledger audits it: when, by whom, and what Linq answered."""

    id: int
    chat_id: str
    line: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    http_status: int | None
    error_code: int | None
    error_message: str | None
    trace_id: str | None
    latency_ms: float | None
    tries: int
    instance: str
    forced: bool

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}
