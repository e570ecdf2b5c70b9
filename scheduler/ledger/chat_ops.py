"""Operator changes to one chat: pause and resume.

A paused chat is never due (the rule's ``chat_paused``); resuming it recomputes when it is due
next. Only an active chat can be paused: pausing an opted-out or gone chat, then resuming
it, would silently undo what Linq told us about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog

from scheduler.core.rule import Policy
from scheduler.core.status import ChatStatus
from scheduler.errors import NotFound, ShareSchedulerError
from scheduler.ledger.claim_sql import ClaimSQL
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, compute_next
from scheduler.ledger.recipients import chat_status_for, one_to_one_handle, recipient_facts

__all__ = ["ChatStateError", "StatusChange", "set_chat_paused"]

log = structlog.get_logger("scheduler.ops")


class ChatStateError(ShareSchedulerError):
    """The chat is in a state the operation does not apply to."""


@dataclass(frozen=True)
class StatusChange:
    chat_id: str
    before: str
    after: str
    next_share_at: datetime | None
    changed: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "before": self.before,
            "status": self.after,
            "changed": self.changed,
            "next_share_at": self.next_share_at,
        }


async def set_chat_paused(
    ledger: Ledger, chat_id: str, *, paused: bool, policy: Policy, now: datetime
) -> StatusChange:
    """Pause (``paused=True``) or resume one chat; a repeat is a no-op, not an error."""
    want, other = (
        (ChatStatus.paused, ChatStatus.active) if paused else (ChatStatus.active, ChatStatus.paused)
    )
    async with ledger.write() as conn:
        sql = await ClaimSQL.open(conn)
        found = await sql.chats([chat_id])
        if not found:
            raise NotFound(f"no chat {chat_id!r} in the ledger")
        row = found[0]
        if row.status == want:
            return StatusChange(chat_id, row.status, row.status, row.next_share_at, False)
        if row.status != other:
            wanted = "an active chat can be paused" if paused else "a paused chat can be resumed"
            raise ChatStateError(f"chat {chat_id!r} is {row.status}: only {wanted}")
        if not paused:
            # The recipient may have opted out or been blocked meanwhile (on any line).
            handle = one_to_one_handle(row.recipients, row.is_group)
            if handle is not None:
                facts = (await recipient_facts(conn, [handle])).get(handle)
                want = ChatStatus(chat_status_for(want, facts))
        values: dict[str, Any] = {"status": want, "updated_at": now}
        nxt = row.next_share_at
        if row.claim_attempt_id is None:
            # A claimed chat keeps its next_share_at; recording the outcome recomputes it with
            # the new status.
            nxt = compute_next(row, policy, now, status=want)
            values["next_share_at"] = nxt
        await conn.execute(sa.update(chats).where(chats.c.chat_id == chat_id).values(**values))
    log.info(
        "chat.paused" if paused else "chat.resumed",
        chat_id=chat_id,
        line=row.line,
        before=row.status,
        next_share_at=nxt.isoformat() if nxt else None,
    )
    return StatusChange(chat_id, row.status, want.value, nxt, True)
