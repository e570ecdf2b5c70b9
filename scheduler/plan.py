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
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, compute_next, select_chats_with_line
from scheduler.rule import Policy

__all__ = ["Forecast", "PlannedShare", "forecast"]

PAGE = 2000


@dataclass(frozen=True, slots=True)
class PlannedShare:
    chat_id: str
    line: str | None
    at: datetime


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
            data["chats"] = [{"chat_id": p.chat_id, "line": p.line, "at": p.at} for p in self.chats]
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
    for _ in range(max_per_chat):
        if t is None or t >= until:
            return
        if t <= now:
            result.due_now += 1
        result.buckets[(row.line, _hour(t))] += 1
        if len(result.chats) < chat_limit:
            result.chats.append(PlannedShare(row.chat_id, row.line, t))
        elif chat_limit:
            result.chats_truncated = True
        last, count = t, count + 1
        t = compute_next(row, policy, t, last_shared_at=last, share_count=count, not_before=None)
