"""Line eligibility: a line that Linq answers 2027 for (or reports FLAGGED / CRITICAL) pauses.

This is the line's own state, apart from the operator's pause: no chat loses its day, the
line's chats only wait. While ineligible, the line gets one share (the probe) at ``probe_at``;
each refusal doubles the wait, up to a cap. A share that succeeds, or a
``phone_number.status_updated`` saying ``ACTIVE``, resumes the line. Facts are ordered by their
own time (``eligibility_changed_at``), so a stale webhook changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.line import PROBE_FIRST, PROBE_MAX, LineEligibility, probe_backoff
from scheduler.core.status import ChatStatus
from scheduler.ledger.facts import chats, lines

__all__ = [
    "PROBE_FIRST",
    "PROBE_MAX",
    "LineEligibility",
    "hold_probe",
    "ineligible_lines",
    "mark_line_eligible",
    "mark_line_ineligible",
    "probe_backoff",
]


@dataclass(frozen=True, slots=True)
class _Stored:
    """A line's eligibility as stored, before a new fact is applied."""

    ineligible_since: datetime | None
    probe_backoff_seconds: int
    changed_at: datetime | None

    def stale(self, at: datetime) -> bool:
        """Whether a fact of ``at`` is older than the latest one applied."""
        return self.changed_at is not None and at < self.changed_at


async def _line(conn: AsyncConnection, number: str) -> _Stored | None:
    found = await conn.execute(
        sa.select(
            lines.c.ineligible_since,
            lines.c.probe_backoff_seconds,
            lines.c.eligibility_changed_at,
        ).where(lines.c.number == number)
    )
    row = found.first()
    if row is None:
        return None
    return _Stored(row.ineligible_since, row.probe_backoff_seconds, row.eligibility_changed_at)


async def mark_line_ineligible(
    conn: AsyncConnection, number: str, *, at: datetime, reason: str, now: datetime
) -> datetime | None:
    """Pause the line's sharing from ``at`` (the fact's time); return its next probe time, or
    None when the line is unknown or the fact is older than the line's latest one.

    The line's chats wait until the probe: ``next_share_at`` becomes at least ``probe_at``
    (one set-based UPDATE; chats not schedulable stay so).
    """
    stored = await _line(conn, number)
    if stored is None or stored.stale(at):
        return None
    backoff = probe_backoff(stored.probe_backoff_seconds if stored.ineligible_since else 0)
    probe_at = max(now, at) + backoff
    await conn.execute(
        sa.update(lines)
        .where(lines.c.number == number)
        .values(
            ineligible_since=stored.ineligible_since or at,
            ineligible_reason=reason[:500],
            probe_at=probe_at,
            probe_backoff_seconds=int(backoff.total_seconds()),
            eligibility_changed_at=at,
            updated_at=now,
        )
    )
    await conn.execute(
        sa.update(chats)
        .where(chats.c.line == number)
        .where(chats.c.claim_attempt_id.is_(None))
        .where(chats.c.next_share_at < probe_at)
        .values(next_share_at=probe_at)
    )
    return probe_at


async def mark_line_eligible(
    conn: AsyncConnection, number: str, *, at: datetime, now: datetime
) -> bool:
    """Resume the line from ``at``; return whether it was ineligible (and is no longer).

    The line's schedulable chats become due now, so that the next pass re-checks each against
    the rule and reschedules those not due: the rule, not this call, decides when they share.
    """
    stored = await _line(conn, number)
    if stored is None or stored.stale(at):
        return False
    await conn.execute(
        sa.update(lines)
        .where(lines.c.number == number)
        .values(
            ineligible_since=None,
            ineligible_reason=None,
            probe_at=None,
            probe_backoff_seconds=0,
            eligibility_changed_at=at,
            updated_at=now,
        )
    )
    if stored.ineligible_since is None:
        return False
    await conn.execute(
        sa.update(chats)
        .where(chats.c.line == number)
        .where(chats.c.claim_attempt_id.is_(None))
        .where(chats.c.status == ChatStatus.active)
        .where(chats.c.next_share_at.is_not(None))
        .values(next_share_at=now)
    )
    return True


async def hold_probe(conn: AsyncConnection, number: str, until: datetime) -> None:
    """A probe was claimed: no other chat of the line is tried before ``until``."""
    await conn.execute(
        sa.update(lines)
        .where(lines.c.number == number)
        .where(lines.c.ineligible_since.is_not(None))
        .values(probe_at=until)
    )


async def ineligible_lines(conn: AsyncConnection) -> list[LineEligibility]:
    rows = await conn.execute(
        sa.select(
            lines.c.number,
            lines.c.ineligible_since,
            lines.c.ineligible_reason,
            lines.c.probe_at,
            lines.c.probe_backoff_seconds,
        )
        .where(lines.c.ineligible_since.is_not(None))
        .order_by(lines.c.number)
    )
    return [
        LineEligibility(
            r.number,
            r.ineligible_since,
            r.ineligible_reason,
            r.probe_at,
            timedelta(seconds=r.probe_backoff_seconds),
        )
        for r in rows
    ]
