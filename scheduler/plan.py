"""``plan``: what will be shared in the next hours, per line and hour, from the ledger + the rule.

The forecast walks the chats whose ``next_share_at`` falls before the horizon (an index range
scan in keyset pages, so memory stays bounded), asks the rule when each is due from now, and
replays the rule after each predicted share to catch a second day inside the horizon. It
assumes the facts stay as they are: no new chats or messages, cards and pauses unchanged,
and every share succeeding when due. A pass shares a due chat within one pass interval, so
a later run can be checked hour by hour against the forecast.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from scheduler.core.rule import Policy, Verdict, explain
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import (
    chat_facts,
    chats,
    compute_next,
    line_facts_of,
    select_chats_with_line,
)
from scheduler.ledger.queries import get_chat_with_line

__all__ = [
    "ChatVerdict",
    "Forecast",
    "PlannedShare",
    "RateFit",
    "explain_chat",
    "forecast",
    "rate_fit",
]

PAGE = 2000


@dataclass(frozen=True, slots=True)
class PlannedShare:
    chat_id: str
    line: str | None
    at: datetime
    # The rule's reason at the forecast's ``now``: "due", or what holds the share until ``at``.
    reason: str = "due"


@dataclass(frozen=True, slots=True)
class RateFit:
    """Whether the busiest forecast day's shares fit ``requests_per_second`` over the window.

    An upper bound on a day's calls: every share is one call when nothing fails, and a pass
    sends at most ``requests_per_second``. Windows are the schedule's wall-clock window; lines
    in other zones shift it but do not lengthen it.
    """

    requests_per_second: float
    window_seconds: float
    busiest_day: date | None
    busiest_shares: int

    @property
    def capacity(self) -> int:
        return int(self.requests_per_second * self.window_seconds)

    @property
    def fits(self) -> bool:
        return self.busiest_shares <= self.capacity

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_per_second": self.requests_per_second,
            "window_seconds": self.window_seconds,
            "capacity_per_day": self.capacity,
            "busiest_day": self.busiest_day.isoformat() if self.busiest_day else None,
            "busiest_day_shares": self.busiest_shares,
            "fits": self.fits,
        }


def window_seconds(policy: Policy) -> float:
    """Length of one share window (a window crossing midnight runs into the next day)."""
    start = policy.window_start.hour * 3600 + policy.window_start.minute * 60
    end = policy.window_end.hour * 3600 + policy.window_end.minute * 60
    start += policy.window_start.second
    end += policy.window_end.second
    return float((end - start) % 86400)


def rate_fit(
    forecast: Forecast, policy: Policy, requests_per_second: float, zone: ZoneInfo
) -> RateFit:
    """The busiest local day of ``forecast`` against what the rate limit lets through."""
    per_day: Counter[date] = Counter()
    for (_line, hour), n in forecast.buckets.items():
        per_day[hour.astimezone(zone).date()] += n
    busiest = max(per_day.items(), key=lambda kv: (kv[1], kv[0]), default=None)
    return RateFit(
        requests_per_second=requests_per_second,
        window_seconds=window_seconds(policy),
        busiest_day=busiest[0] if busiest else None,
        busiest_shares=busiest[1] if busiest else 0,
    )


@dataclass
class Forecast:
    now: datetime
    until: datetime
    hours: int
    buckets: Counter[tuple[str | None, datetime]] = field(default_factory=Counter)
    due_now: int = 0
    in_flight: int = 0
    chats: list[PlannedShare] = field(default_factory=list)
    chats_truncated: bool = False

    @property
    def total(self) -> int:
        return sum(self.buckets.values())

    def per_line(self) -> dict[str | None, list[tuple[datetime, int]]]:
        lines: dict[str | None, list[tuple[datetime, int]]] = {}
        for (line, hour), n in sorted(
            self.buckets.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", kv[0][1])
        ):
            lines.setdefault(line, []).append((hour, n))
        return lines

    def as_dict(self, *, with_chats: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "now": self.now,
            "until": self.until,
            "hours": self.hours,
            "total": self.total,
            "due_now": self.due_now,
            "in_flight": self.in_flight,
            "lines": [
                {
                    "line": line,
                    "total": sum(n for _, n in hours),
                    "hours": [{"hour": hour, "shares": n} for hour, n in hours],
                }
                for line, hours in self.per_line().items()
            ],
        }
        if with_chats:
            data["chats"] = [
                {"chat_id": p.chat_id, "line": p.line, "at": p.at, "reason": p.reason}
                for p in self.chats
            ]
            data["chats_truncated"] = self.chats_truncated
        return data


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


async def forecast(
    ledger: Ledger,
    policy: Policy,
    *,
    now: datetime,
    hours: int,
    line: str | None = None,
    chat_limit: int = 0,
) -> Forecast:
    """Predict the shares in ``[now, now + hours)``; keep up to ``chat_limit`` of them listed."""
    if hours < 1:
        raise ValueError("hours must be at least 1")
    until = now + timedelta(hours=hours)
    result = Forecast(now=now, until=until, hours=hours)
    # A chat is shared at most once a day: this bounds the replay of one chat.
    max_per_chat = hours // 24 + 2
    after: tuple[datetime, str] | None = None
    while True:
        query = (
            select_chats_with_line()
            .where(chats.c.next_share_at.is_not(None))
            .where(chats.c.next_share_at < until)
            .order_by(chats.c.next_share_at, chats.c.chat_id)
            .limit(PAGE)
        )
        if line is not None:
            query = query.where(chats.c.line == line)
        if after is not None:
            at, chat_id = after
            query = query.where(
                sa.or_(
                    chats.c.next_share_at > at,
                    sa.and_(chats.c.next_share_at == at, chats.c.chat_id > chat_id),
                )
            )
        async with ledger.read() as conn:
            rows = (await conn.execute(query)).all()
        for row in rows:
            _replay(row, policy, now, until, result, chat_limit, max_per_chat)
        if len(rows) < PAGE:
            return result
        after = (rows[-1].next_share_at, rows[-1].chat_id)


def _replay(
    row: Any,
    policy: Policy,
    now: datetime,
    until: datetime,
    result: Forecast,
    chat_limit: int,
    max_per_chat: int,
) -> None:
    if row.claim_attempt_id is not None and row.claim_expires_at > now:
        result.in_flight += 1
        return
    t = compute_next(row, policy, now)
    last, count = row.last_shared_at, row.share_count
    first = True
    for _ in range(max_per_chat):
        if t is None or t >= until:
            return
        if t <= now:
            result.due_now += 1
        result.buckets[(row.line, _hour(t))] += 1
        if len(result.chats) < chat_limit:
            reason = "due" if t <= now else "later"
            if first:
                reason = explain(chat_facts(row), line_facts_of(row), policy, now).reason
            result.chats.append(PlannedShare(row.chat_id, row.line, t, reason))
        elif chat_limit:
            result.chats_truncated = True
        last, count, first = t, count + 1, False
        t = compute_next(row, policy, t, last_shared_at=last, share_count=count, not_before=None)


@dataclass(frozen=True, slots=True)
class ChatVerdict:
    chat_id: str
    line: str | None
    verdict: Verdict
    line_paused: bool
    card_state: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "line": self.line,
            "due": self.verdict.due,
            "reason": self.verdict.reason,
            "next_at": self.verdict.next_at,
            "line_paused": self.line_paused,
            "card_state": self.card_state,
        }


async def explain_chat(ledger: Ledger, policy: Policy, chat_id: str, now: datetime) -> ChatVerdict:
    """Why one chat is or is not due at ``now``, by the rule, from its ledger facts."""
    row = await get_chat_with_line(ledger, chat_id)
    return ChatVerdict(
        chat_id=row.chat_id,
        line=row.line,
        verdict=explain(chat_facts(row), line_facts_of(row), policy, now),
        line_paused=bool(row.line_paused),
        card_state=row.line_card_state,
    )
