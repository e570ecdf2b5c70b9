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
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.status import ChatStatus
from scheduler.ledger.facts import chats, lines

PROBE_FIRST = timedelta(minutes=5)
PROBE_MAX = timedelta(hours=1)


def probe_backoff(previous_seconds: int) -> timedelta:
    """The wait before the next probe: the first, then doubling up to the cap. Pure."""
    if previous_seconds <= 0:
        return PROBE_FIRST
    return min(timedelta(seconds=previous_seconds * 2), PROBE_MAX)


@dataclass(frozen=True, slots=True)
class LineEligibility:
    number: str
    ineligible_since: datetime
    reason: str | None
    probe_at: datetime | None
    backoff: timedelta


async def _line(conn: AsyncConnection, number: str) -> Any:
    found = await conn.execute(
        sa.select(
            lines.c.ineligible_since,
            lines.c.probe_backoff_seconds,
            lines.c.eligibility_changed_at,
        ).where(lines.c.number == number)
    )
    return found.first()


def _stale(row: Any, at: datetime) -> bool:
    return row.eligibility_changed_at is not None and at < row.eligibility_changed_at


async def mark_line_ineligible(
    conn: AsyncConnection, number: str, *, at: datetime, reason: str, now: datetime
) -> datetime | None:
    """Pause the line's sharing from ``at`` (the fact's time); return its next probe time, or
    None when the line is unknown or the fact is older than the line's latest one.

    The line's chats wait until the probe: ``next_share_at`` becomes at least ``probe_at``
    (one set-based UPDATE; chats not schedulable stay so).
    """
    row = await _line(conn, number)
    if row is None or _stale(row, at):
        return None
    backoff = probe_backoff(row.probe_backoff_seconds if row.ineligible_since else 0)
    probe_at = max(now, at) + backoff
    await conn.execute(
        sa.update(lines)
        .where(lines.c.number == number)
        .values(
            ineligible_since=row.ineligible_since or at,
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
    row = await _line(conn, number)
    if row is None or _stale(row, at):
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
    if row.ineligible_since is None:
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
