"""The forecast of shares from the rule: pure, given ``now``, the policy and the chats' facts.

A forecast assumes the facts stay as they are: no new chats or messages, cards and pauses
unchanged, and every share succeeding when due. :func:`replay` asks the rule when a chat is
due from ``now`` and replays the rule after each predicted share to catch a second day inside
the horizon.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from scheduler.core.rule import ChatFacts, LineFacts, Policy, Verdict, explain, next_share_at

__all__ = [
    "ChatRuleFacts",
    "ChatVerdict",
    "Forecast",
    "PlannedShare",
    "RateFit",
    "rate_fit",
    "replay",
    "verdict_of",
    "window_seconds",
]


@dataclass(frozen=True, slots=True)
class ChatRuleFacts:
    """One chat and its line as the rule reads them, with the chat's claim if one is held."""

    chat_id: str
    line: str | None
    chat: ChatFacts
    line_facts: LineFacts
    line_paused: bool
    line_card_state: str | None
    # When a share pass's claim on the chat lapses; None when no pass holds it.
    claim_expires_at: datetime | None = None


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


def replay(chat: ChatRuleFacts, policy: Policy, result: Forecast, *, chat_limit: int) -> None:
    """Add ``chat``'s shares in ``[result.now, result.until)`` to ``result``."""
    now, until = result.now, result.until
    if chat.claim_expires_at is not None and chat.claim_expires_at > now:
        result.in_flight += 1
        return
    # A chat is shared at most once a day: this bounds the replay of one chat.
    max_per_chat = result.hours // 24 + 2
    facts = chat.chat
    t = next_share_at(facts, chat.line_facts, policy, now)
    first = True
    for _ in range(max_per_chat):
        if t is None or t >= until:
            return
        if t <= now:
            result.due_now += 1
        result.buckets[(chat.line, _hour(t))] += 1
        if len(result.chats) < chat_limit:
            reason = "due" if t <= now else "later"
            if first:
                reason = explain(chat.chat, chat.line_facts, policy, now).reason
            result.chats.append(PlannedShare(chat.chat_id, chat.line, t, reason))
        elif chat_limit:
            result.chats_truncated = True
        first = False
        facts = facts._replace(last_shared_at=t, share_count=facts.share_count + 1, not_before=None)
        t = next_share_at(facts, chat.line_facts, policy, t)


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


def verdict_of(chat: ChatRuleFacts, policy: Policy, now: datetime) -> ChatVerdict:
    """Why ``chat`` is or is not due at ``now``, by the rule."""
    return ChatVerdict(
        chat_id=chat.chat_id,
        line=chat.line,
        verdict=explain(chat.chat, chat.line_facts, policy, now),
        line_paused=chat.line_paused,
        card_state=chat.line_card_state,
    )
