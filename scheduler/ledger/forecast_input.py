"""What ``plan`` reads: chats with their lines' facts, as the rule sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scheduler.core.forecast import ChatRuleFacts
from scheduler.errors import NotFound
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chat_facts, chats, line_facts_of, select_chats_with_line

__all__ = ["chat_rule_facts", "chats_scheduled_before"]


def _rule_facts(row: Any) -> ChatRuleFacts:
    return ChatRuleFacts(
        chat_id=row.chat_id,
        line=row.line,
        chat=chat_facts(row),
        line_facts=line_facts_of(row),
        line_paused=bool(row.line_paused),
        line_card_state=row.line_card_state,
        claim_expires_at=row.claim_expires_at if row.claim_attempt_id is not None else None,
    )


async def chats_scheduled_before(
    ledger: Ledger, until: datetime, *, line: str | None = None, page: int = 2000
) -> AsyncIterator[list[ChatRuleFacts]]:
    """The chats whose next share falls before ``until``, in that order, ``page`` at a time.

    An index range scan in keyset pages, so memory stays bounded whatever the ledger's size.
    """
    after: tuple[datetime, str] | None = None
    while True:
        query = (
            select_chats_with_line()
            .where(chats.c.next_share_at.is_not(None))
            .where(chats.c.next_share_at < until)
            .order_by(chats.c.next_share_at, chats.c.chat_id)
            .limit(page)
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
        yield [_rule_facts(row) for row in rows]
        if len(rows) < page:
            return
        after = (rows[-1].next_share_at, rows[-1].chat_id)


async def chat_rule_facts(ledger: Ledger, chat_id: str) -> ChatRuleFacts:
    """One chat and its line's facts; :class:`NotFound` when the ledger has no such chat."""
    async with ledger.read() as conn:
        row = (
            await conn.execute(select_chats_with_line().where(chats.c.chat_id == chat_id))
        ).first()
    if row is None:
        raise NotFound(f"no chat {chat_id!r} in the ledger")
    return _rule_facts(row)
