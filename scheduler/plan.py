"""``plan``: what will be shared in the next hours, per line and hour, from the ledger + the rule.

The forecast walks the chats whose ``next_share_at`` falls before the horizon (an index range
scan in keyset pages, so memory stays bounded), asks the rule when each is due from now, and
replays the rule after each predicted share to catch a second day inside the horizon. It
assumes the facts stay as they are: no new chats or messages, cards and pauses unchanged,
and every share succeeding when due. A pass shares a due chat within one pass interval, so
a later run can be checked hour by hour against the forecast.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from scheduler.core.forecast import (
    ChatVerdict,
    Forecast,
    PlannedShare,
    RateFit,
    rate_fit,
    replay,
    verdict_of,
    window_seconds,
)
from scheduler.core.rule import Policy
from scheduler.ledger.engine import Ledger
from scheduler.ledger.forecast_input import chat_rule_facts, chats_scheduled_before

__all__ = [
    "ChatVerdict",
    "Forecast",
    "PlannedShare",
    "RateFit",
    "explain_chat",
    "forecast",
    "rate_fit",
    "window_seconds",
]

# Chats read from the ledger at a time.
PAGE = 2000


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
    result = Forecast(now=now, until=now + timedelta(hours=hours), hours=hours)
    async for page in chats_scheduled_before(ledger, result.until, line=line, page=PAGE):
        for chat in page:
            replay(chat, policy, result, chat_limit=chat_limit)
    return result


async def explain_chat(ledger: Ledger, policy: Policy, chat_id: str, now: datetime) -> ChatVerdict:
    """Why one chat is or is not due at ``now``, by the rule, from its ledger facts."""
    return verdict_of(await chat_rule_facts(ledger, chat_id), policy, now)
