"""The card write budget of one number, as pure bookkeeping. No I/O.

Linq lets each phone number make **3 card writes (POST + PATCH together) per 10 minutes**, and
counts a write even when it is answered 2014, 2012, 2022 or 4004. The ledger keeps, per line,
the recent write times (``card_write_log``, a JSON list of ISO stamps), the earliest next write
(``card_next_write_at``: a 429's ``Retry-After``, a 4004 or 2022 wait, or the lease of a write in
flight) and the run of consecutive failed writes (``card_write_failures``). Because the state
lives in the ledger, the budget holds across restarts and between replicas.

A write is stamped *before* the call (a crash mid-call still counts) and the stamp is moved to
the call's end once it is answered: Linq saw the request somewhere in between, so the later
instant is the safe one to count the 10 minutes from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from scheduler.errors import (
    AccessDenied,
    BadRequest,
    CardExists,
    CardNotActive,
    CardSetupIncomplete,
    CardWriteThrottled,
    LinqError,
    RateLimited,
    Unauthorized,
)

WRITE_LIMIT = 3
WRITE_WINDOW = timedelta(minutes=10)
# Our clock and Linq's may disagree by a little; never aim for the exact edge of the window.
WINDOW_MARGIN = timedelta(seconds=1)
# 4004: Linq's upstream limit grows with each retry, so the wait starts long and doubles.
THROTTLE_WAIT = timedelta(minutes=10)
THROTTLE_WAIT_MAX = timedelta(hours=4)
RETRY_WAIT_MAX = timedelta(hours=1)
DEFAULT_RETRY_AFTER = timedelta(seconds=60)
# "Never, until the desired card changes": the write was refused for what it is (1xxx, 2005).
BLOCKED = datetime(9999, 12, 31, tzinfo=UTC)


class WriteResult(StrEnum):
    """How Linq answered one card write; also the ``result`` label of the writes metric."""

    ok = "ok"
    exists = "exists"  # 2014 on POST: switch to PATCH
    missing = "missing"  # 2012 on PATCH: the card is gone, create it
    rate_limited = "rate_limited"  # 429: wait Retry-After
    throttled = "throttled"  # 4004: wait long
    incomplete = "incomplete"  # 2022: retry later
    error = "error"  # 5xx, 3xxx, transport: retry later
    rejected = "rejected"  # 1xxx, 2005: never retry this card
    unauthorized = "unauthorized"  # 2004: the token, not the card


# The Linq errors a card write can meet, in the order they are tried.
_RESULT_BY_ERROR: tuple[tuple[type[LinqError], WriteResult], ...] = (
    (CardExists, WriteResult.exists),
    (CardNotActive, WriteResult.missing),
    (RateLimited, WriteResult.rate_limited),
    (CardWriteThrottled, WriteResult.throttled),
    (CardSetupIncomplete, WriteResult.incomplete),
    (Unauthorized, WriteResult.unauthorized),
    (BadRequest, WriteResult.rejected),
    (AccessDenied, WriteResult.rejected),
)


def classify(error: LinqError | None) -> WriteResult:
    if error is None:
        return WriteResult.ok
    for error_type, result in _RESULT_BY_ERROR:
        if isinstance(error, error_type):
            return result
    if error.status is not None and 400 <= error.status < 500 and error.status != 408:
        return WriteResult.rejected
    return WriteResult.error


def parse_log(text: str | None) -> tuple[datetime, ...]:
    """The stamps of ``card_write_log``.

    Only this module writes the log; should it ever be unreadable it reads as empty, and
    Linq's own 429 (honoured through ``next_write_at``) still guards the number.
    """
    if not text:
        return ()
    try:
        items = json.loads(text)
        stamps = [datetime.fromisoformat(item) for item in items]
    except (ValueError, TypeError):
        return ()
    return tuple(sorted(s if s.tzinfo else s.replace(tzinfo=UTC) for s in stamps))


def dump_log(writes: Iterable[datetime]) -> str:
    return json.dumps([w.astimezone(UTC).isoformat() for w in sorted(writes)])


def _doubling(base: timedelta, failures: int, cap: timedelta) -> timedelta:
    steps = max(0, failures - 1)
    if steps >= 32:
        return max(cap, base)
    grown: timedelta = base * (2**steps)
    return max(base, min(cap, grown))


def throttle_wait(failures: int) -> timedelta:
    """The wait after a 4004: 10 minutes, doubling with each consecutive failure, to 4 hours."""
    return _doubling(THROTTLE_WAIT, failures, THROTTLE_WAIT_MAX)


def retry_wait(base: timedelta, failures: int) -> timedelta:
    """The wait after a 2022, a 5xx or a transport failure: ``base``, doubling, to 1 hour."""
    return _doubling(base, failures, max(base, RETRY_WAIT_MAX))


def _still_counts(write: datetime, at: datetime) -> bool:
    """Whether a write made at ``write`` still counts against the budget at ``at``."""
    return write + WRITE_WINDOW + WINDOW_MARGIN > at


@dataclass(frozen=True, slots=True)
class WriteBudget:
    writes: tuple[datetime, ...] = ()
    next_write_at: datetime | None = None
    failures: int = 0

    @classmethod
    def from_row(
        cls, log: str | None, next_write_at: datetime | None, failures: int | None
    ) -> WriteBudget:
        return cls(parse_log(log), next_write_at, failures or 0)

    @property
    def blocked(self) -> bool:
        return self.next_write_at is not None and self.next_write_at >= BLOCKED

    def recent(self, now: datetime) -> tuple[datetime, ...]:
        """Writes that still count at ``now``."""
        return tuple(w for w in self.writes if _still_counts(w, now))

    def window_frees_at(self, now: datetime) -> datetime | None:
        """When the 10-minute window next has room, or None if it has room now."""
        recent = self.recent(now)
        if len(recent) < WRITE_LIMIT:
            return None
        return recent[-WRITE_LIMIT] + WRITE_WINDOW + WINDOW_MARGIN

    def allowed_at(self, now: datetime) -> datetime:
        """The earliest instant, at or after ``now``, when a write may be sent."""
        at = now
        if self.next_write_at is not None and self.next_write_at > at:
            at = self.next_write_at
        frees = self.window_frees_at(now)
        if frees is not None and frees > at:
            at = frees
        return at

    def can_write(self, now: datetime) -> bool:
        return self.allowed_at(now) <= now

    def reserve(self, at: datetime, lease: timedelta) -> WriteBudget:
        """Spend one write at ``at``; nobody else writes this card until the lease ends."""
        if not self.can_write(at):
            raise ValueError(f"no card write allowed before {self.allowed_at(at).isoformat()}")
        return replace(self, writes=(*self.recent(at), at), next_write_at=at + lease)

    def settle(
        self,
        reserved_at: datetime,
        finished_at: datetime,
        result: WriteResult,
        *,
        retry_after: float | None = None,
        retry_base: timedelta = timedelta(minutes=1),
    ) -> WriteBudget:
        """The budget after the write reserved at ``reserved_at`` was answered ``result``."""
        writes = list(self.writes)
        if reserved_at in writes:
            writes.remove(reserved_at)  # one stamp: several writes may share an instant
        writes.append(max(finished_at, reserved_at))
        kept = tuple(sorted(w for w in writes if _still_counts(w, finished_at)))
        hinted = timedelta(seconds=retry_after) if retry_after else None
        failures = self.failures
        next_write_at: datetime | None = None
        if result == WriteResult.ok:
            failures = 0
        elif result == WriteResult.rate_limited:
            next_write_at = finished_at + (hinted or DEFAULT_RETRY_AFTER)
        elif result == WriteResult.throttled:
            failures += 1
            next_write_at = finished_at + max(throttle_wait(failures), hinted or timedelta(0))
        elif result in (WriteResult.incomplete, WriteResult.error):
            failures += 1
            wait = retry_wait(retry_base, failures)
            next_write_at = finished_at + max(wait, hinted or timedelta(0))
        elif result == WriteResult.rejected:
            failures += 1
            next_write_at = BLOCKED
        return WriteBudget(kept, next_write_at, failures)
