"""Ledger rows to the plain facts the sharing rule reads, and the recompute of next_share_at."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from scheduler.core.rule import ChatFacts, LineFacts, Policy, next_share_at
from scheduler.core.status import CardState
from scheduler.ledger.models import chats_table, lines_table

chats = chats_table
lines = lines_table

# The chat columns plus the line columns the rule needs, for one joined SELECT.
CHAT_WITH_LINE = [
    *chats.c,
    lines.c.card_state.label("line_card_state"),
    lines.c.paused.label("line_paused"),
    lines.c.timezone.label("line_timezone"),
    lines.c.probe_at.label("line_probe_at"),
]
CHAT_JOIN_LINE = chats.outerjoin(lines, lines.c.number == chats.c.line)


def select_chats_with_line() -> sa.Select[Any]:
    return sa.select(*CHAT_WITH_LINE).select_from(CHAT_JOIN_LINE)


def first_recipient(recipients: str | None) -> str | None:
    if not recipients:
        return None
    return recipients.split(",", 1)[0] or None


def chat_facts(row: Any, **changes: Any) -> ChatFacts:
    """The rule's facts of a ledger row, with ``changes`` (new column values) applied."""
    facts = ChatFacts(
        row.service,
        bool(row.is_group),
        row.status,
        first_recipient(row.recipients),
        row.first_outbound_at,
        row.last_outbound_at,
        row.last_inbound_at,
        row.last_shared_at,
        row.share_count,
        row.not_before,
    )
    if not changes:
        return facts  # the claim's re-check of every chat it reads
    # Columns that are facts under their own name; the others the rule does not read.
    own = {name: value for name, value in changes.items() if name in _SAME_NAMED_FACTS}
    if "is_group" in changes:
        own["is_group"] = bool(changes["is_group"])
    if "recipients" in changes:
        own["recipient"] = first_recipient(changes["recipients"])
    return facts._replace(**own)


_SAME_NAMED_FACTS = frozenset(ChatFacts._fields) - {"is_group", "recipient"}


@lru_cache(maxsize=1024)
def line_facts(
    card_state: str | None,
    paused: bool | None,
    timezone: str | None,
    probe_at: datetime | None = None,
) -> LineFacts:
    # A handful of distinct lines serve every chat of a batch: build each one's facts once.
    return LineFacts(
        card_active=card_state == CardState.active,
        paused=bool(paused),
        timezone=timezone,
        not_before=probe_at,
    )


def line_facts_of(row: Any) -> LineFacts:
    return line_facts(row.line_card_state, row.line_paused, row.line_timezone, row.line_probe_at)


def compute_next(
    row: Any, policy: Policy, now: datetime, *, line: LineFacts | None = None, **changes: Any
) -> datetime | None:
    return next_share_at(chat_facts(row, **changes), line or line_facts_of(row), policy, now)
