"""Ledger rows to the plain facts the sharing rule reads, and the recompute of next_share_at."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scheduler.ledger.models import CardState, chats_table, lines_table
from scheduler.rule import ChatFacts, LineFacts, Policy, next_share_at

chats = chats_table
lines = lines_table

# The chat columns plus the line columns the rule needs, for one joined SELECT.
CHAT_WITH_LINE = [
    *chats.c,
    lines.c.card_state.label("line_card_state"),
    lines.c.paused.label("line_paused"),
    lines.c.timezone.label("line_timezone"),
]
CHAT_JOIN_LINE = chats.outerjoin(lines, lines.c.number == chats.c.line)


def select_chats_with_line() -> sa.Select[Any]:
    return sa.select(*CHAT_WITH_LINE).select_from(CHAT_JOIN_LINE)


def first_recipient(recipients: str | None) -> str | None:
    if not recipients:
        return None
    return recipients.split(",", 1)[0] or None


def chat_facts(row: Any, **changes: Any) -> ChatFacts:
    values = {
        "service": row.service,
        "is_group": bool(row.is_group),
        "status": row.status,
        "recipient": first_recipient(row.recipients),
        "first_outbound_at": row.first_outbound_at,
        "last_outbound_at": row.last_outbound_at,
        "last_inbound_at": row.last_inbound_at,
        "last_shared_at": row.last_shared_at,
        "share_count": row.share_count,
        "not_before": row.not_before,
    }
    values.update((k, v) for k, v in changes.items() if k in values)
    return ChatFacts(**values)


def line_facts(card_state: str | None, paused: bool | None, timezone: str | None) -> LineFacts:
    return LineFacts(
        card_active=card_state == CardState.active, paused=bool(paused), timezone=timezone
    )


def line_facts_of(row: Any) -> LineFacts:
    return line_facts(row.line_card_state, row.line_paused, row.line_timezone)


def compute_next(
    row: Any, policy: Policy, now: datetime, *, line: LineFacts | None = None, **changes: Any
) -> datetime | None:
    return next_share_at(chat_facts(row, **changes), line or line_facts_of(row), policy, now)
