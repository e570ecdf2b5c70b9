"""``ledger stats``: the ledger at a glance, per line and in total.

Days ("shared today", "yesterday") are calendar days in the report zone: the schedule's fixed
zone, or its fallback zone when windows follow each line's or recipient's zone. Every figure
is a grouped SQL count. The counts by line, status and service are one scan of the chats;
the due chats an index range; the shares of the last two days an index range of the
attempts. The whole report adds the next due chat, the outcomes of the last 24 hours and the
claims in flight, each another read of a whole table: ``ledger stats`` asks for it, the
gauges (read every card check) do not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.config import SharingConfig
from scheduler.core.status import SHARED_OUTCOMES, ChatStatus, Outcome
from scheduler.ledger.claims import attempts
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.recipients import recipient_counts

__all__ = ["LedgerStats", "LineStats", "day_start", "ledger_stats", "report_zone"]

_SHARED = sorted(str(o) for o in SHARED_OUTCOMES)


def report_zone(cfg: SharingConfig) -> ZoneInfo:
    """The zone whose calendar days the operator's reports count in."""
    if cfg.timezone in ("line", "recipient"):
        return ZoneInfo(cfg.fallback_timezone)
    return ZoneInfo(cfg.timezone)


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``zone`` (a day may start at 01:00 on a DST change)."""
    return datetime.combine(day, time(0, 0), tzinfo=zone)


@dataclass
class LineStats:
    line: str | None
    card_state: str | None = None
    paused: bool | None = None
    # Linq refuses activity on the line (2027, FLAGGED): its own pause, apart from ``paused``.
    ineligible: bool | None = None
    ineligible_since: datetime | None = None
    probe_at: datetime | None = None
    chats: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_service: dict[str, int] = field(default_factory=dict)
    shared_today: int = 0
    shared_yesterday: int = 0
    due_now: int = 0
    next_due_at: datetime | None = None
    attempts_24h: dict[str, int] = field(default_factory=dict)

    def states(self) -> list[str]:
        """What keeps the line from sharing (empty: nothing), one word per state."""
        found = []
        if self.paused:
            found.append("paused")
        if self.ineligible:
            found.append("ineligible")
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "card_state": self.card_state,
            "paused": self.paused,
            "states": self.states(),
            "ineligible": self.ineligible,
            "ineligible_since": self.ineligible_since,
            "probe_at": self.probe_at,
            "chats": self.chats,
            "by_status": dict(sorted(self.by_status.items())),
            "by_service": dict(sorted(self.by_service.items())),
            "shared_today": self.shared_today,
            "shared_yesterday": self.shared_yesterday,
            "due_now": self.due_now,
            "next_due_at": self.next_due_at,
            "attempts_24h": dict(sorted(self.attempts_24h.items())),
            "ambiguous_24h": self.attempts_24h.get("ambiguous", 0),
            "failed_24h": self.attempts_24h.get("failed", 0),
        }


@dataclass
class LedgerStats:
    now: datetime
    zone: str
    today: date
    total: LineStats
    lines: list[LineStats]
    recipients_opted_out: int = 0
    recipients_blocked: int = 0

    def as_dict(self) -> dict[str, Any]:
        totals = self.total.as_dict()
        for key in (
            "line",
            "card_state",
            "paused",
            "states",
            "ineligible",
            "ineligible_since",
            "probe_at",
        ):
            totals.pop(key)
        totals["lines_ineligible"] = sum(1 for s in self.lines if s.ineligible)
        totals["recipients_opted_out"] = self.recipients_opted_out
        totals["recipients_blocked"] = self.recipients_blocked
        return {
            "now": self.now,
            "zone": self.zone,
            "today": self.today.isoformat(),
            "totals": totals,
            "lines": [s.as_dict() for s in self.lines],
        }


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


async def ledger_stats(
    ledger: Ledger, *, now: datetime, zone: ZoneInfo, whole: bool = True
) -> LedgerStats:
    """The ledger's numbers at ``now``, days counted in ``zone``. Not ``whole``: without the
    next due chat, the outcomes of the last 24 hours and the claims in flight (left at their
    defaults), which read whole tables: at 10M chats, seconds of the database's time each."""
    today = now.astimezone(zone).date()
    today_start = day_start(today, zone)
    yesterday_start = day_start(today - timedelta(days=1), zone)
    since_24h = now - timedelta(hours=24)
    per_line: dict[str | None, LineStats] = {}

    def of(line: str | None) -> LineStats:
        if line not in per_line:
            per_line[line] = LineStats(line)
        return per_line[line]

    async with ledger.read() as conn:
        for row in await conn.execute(
            sa.select(
                lines.c.number,
                lines.c.card_state,
                lines.c.paused,
                lines.c.ineligible_since,
                lines.c.probe_at,
            )
        ):
            s = of(row.number)
            s.card_state, s.paused = row.card_state, bool(row.paused)
            s.ineligible = row.ineligible_since is not None
            s.ineligible_since, s.probe_at = row.ineligible_since, row.probe_at
        recipients = await recipient_counts(conn)
        # One scan of the chats for the three counts.
        for line, status, service, n in await conn.execute(
            sa.select(chats.c.line, chats.c.status, chats.c.service, sa.func.count()).group_by(
                chats.c.line, chats.c.status, chats.c.service
            )
        ):
            s = of(line)
            s.chats += int(n)
            _add(s.by_status, status, int(n))
            _add(s.by_service, service or "unknown", int(n))
        unclaimed = chats.c.claim_attempt_id.is_(None)
        for line, n in await conn.execute(
            sa.select(chats.c.line, sa.func.count())
            .where(chats.c.next_share_at <= now)
            .where(unclaimed)
            .group_by(chats.c.line)
        ):
            of(line).due_now = int(n)
        is_today = attempts.c.started_at >= today_start
        for line, shared_today, n in await conn.execute(
            sa.select(attempts.c.line, is_today, sa.func.count())
            .where(attempts.c.outcome.in_(_SHARED))
            .where(attempts.c.started_at >= yesterday_start)
            .group_by(attempts.c.line, is_today)
        ):
            s = of(line)
            if shared_today:
                s.shared_today += int(n)
            else:
                s.shared_yesterday += int(n)
        if whole:
            await _add_whole_report_figures(conn, of, now, since_24h)

    total = LineStats(None)
    for s in per_line.values():
        total.chats += s.chats
        total.shared_today += s.shared_today
        total.shared_yesterday += s.shared_yesterday
        total.due_now += s.due_now
        for src, dst in (
            (s.by_status, total.by_status),
            (s.by_service, total.by_service),
            (s.attempts_24h, total.attempts_24h),
        ):
            for key, n in src.items():
                _add(dst, key, n)
        if s.next_due_at is not None and (
            total.next_due_at is None or s.next_due_at < total.next_due_at
        ):
            total.next_due_at = s.next_due_at
    for status in ChatStatus:
        total.by_status.setdefault(status.value, 0)
    ordered = sorted(per_line.values(), key=lambda s: (s.line is None, s.line or ""))
    return LedgerStats(
        now=now,
        zone=zone.key,
        today=today,
        total=total,
        lines=ordered,
        recipients_opted_out=recipients.opted_out,
        recipients_blocked=recipients.blocked,
    )


async def _add_whole_report_figures(
    conn: AsyncConnection,
    of: Callable[[str | None], LineStats],
    now: datetime,
    since_24h: datetime,
) -> None:
    """What only the whole report shows, each a read of a whole table: the next due chat of
    each line (the chats due later: nearly all of them), the outcomes of the last 24 hours,
    and the claims in flight (unindexed columns)."""
    for line, first in await conn.execute(
        sa.select(chats.c.line, sa.func.min(chats.c.next_share_at))
        .where(chats.c.next_share_at > now)
        .where(chats.c.claim_attempt_id.is_(None))
        .group_by(chats.c.line)
    ):
        of(line).next_due_at = _utc(first)
    for line, outcome, n in await conn.execute(
        sa.select(attempts.c.line, attempts.c.outcome, sa.func.count())
        .where(attempts.c.started_at >= since_24h)
        .group_by(attempts.c.line, attempts.c.outcome)
    ):
        _add(of(line).attempts_24h, outcome, int(n))
    # Attempts in flight have no row yet: their chat's claim is the attempt.
    for line, n in await conn.execute(
        sa.select(chats.c.line, sa.func.count())
        .where(chats.c.claim_attempt_id.is_not(None))
        .where(chats.c.claim_started_at >= since_24h)
        .group_by(chats.c.line)
    ):
        _add(of(line).attempts_24h, Outcome.started, int(n))


def _utc(value: Any) -> datetime | None:
    # Aggregates keep the column type on both databases; the guard keeps a driver that
    # hands back naive values from shifting next_due_at by the host's offset.
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"unexpected timestamp {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
