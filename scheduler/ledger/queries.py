"""Read-side queries for the CLI and the HTTP side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scheduler.core.chat import AttemptRecord, ChatRecord
from scheduler.core.status import Outcome
from scheduler.errors import AmbiguousPrefix, NotFound
from scheduler.ledger.claims import attempts
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats


@dataclass(frozen=True)
class ChatFilter:
    due_at: datetime | None = None  # only chats due at this time
    line: str | None = None
    status: str | None = None
    shared_since: datetime | None = None
    never_shared: bool = False
    limit: int | None = 100


def _filtered(f: ChatFilter) -> sa.Select[Any]:
    query = sa.select(chats)
    if f.due_at is not None:
        query = query.where(chats.c.next_share_at <= f.due_at).where(
            chats.c.claim_attempt_id.is_(None)
        )
        query = query.order_by(chats.c.next_share_at, chats.c.chat_id)
    else:
        query = query.order_by(chats.c.chat_id)
    if f.line is not None:
        query = query.where(chats.c.line == f.line)
    if f.status is not None:
        query = query.where(chats.c.status == f.status)
    if f.shared_since is not None:
        query = query.where(chats.c.last_shared_at >= f.shared_since)
    if f.never_shared:
        query = query.where(chats.c.last_shared_at.is_(None))
    if f.limit is not None:
        query = query.limit(f.limit)
    return query


async def list_chats(ledger: Ledger, f: ChatFilter) -> list[ChatRecord]:
    async with ledger.read() as conn:
        return [ChatRecord(**r._mapping) for r in await conn.execute(_filtered(f))]


async def stream_chats(
    ledger: Ledger, f: ChatFilter, batch: int = 5000
) -> AsyncIterator[dict[str, Any]]:
    """Every matching chat, in keyset pages, in bounded memory."""
    after = ""
    while True:
        query = _filtered(ChatFilter(**{**f.__dict__, "limit": batch})).where(
            chats.c.chat_id > after
        )
        async with ledger.read() as conn:
            rows = [
                dict(r._mapping)
                for r in await conn.execute(query.order_by(None).order_by(chats.c.chat_id))
            ]
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = rows[-1]["chat_id"]


PREFIX_CANDIDATES = 10


async def resolve_chat_id(ledger: Ledger, given: str) -> str:
    """The chat id ``given`` names: itself if it exists, else the one chat it is a prefix of.

    No chat: NotFound. Several: AmbiguousPrefix, listing the first candidates (ordered, so
    the message is the same each time).
    """
    if not given:
        raise NotFound("an empty chat id names no chat")
    async with ledger.read() as conn:
        exact = await conn.execute(sa.select(chats.c.chat_id).where(chats.c.chat_id == given))
        if exact.first() is not None:
            return given
        found = list(
            (
                await conn.execute(
                    sa.select(chats.c.chat_id)
                    # substr rather than LIKE: case-sensitive on both databases, no wildcards.
                    .where(sa.func.substr(chats.c.chat_id, 1, len(given)) == given)
                    .order_by(chats.c.chat_id)
                    .limit(PREFIX_CANDIDATES + 1)
                )
            ).scalars()
        )
    if not found:
        raise NotFound(f"no chat {given!r} in the ledger (nor one whose id starts so)")
    if len(found) > 1:
        shown = ", ".join(found[:PREFIX_CANDIDATES])
        more = " and more" if len(found) > PREFIX_CANDIDATES else ""
        raise AmbiguousPrefix(f"{given!r} is the start of several chat ids: {shown}{more}")
    return str(found[0])


async def get_chat(ledger: Ledger, chat_id: str) -> tuple[ChatRecord, list[AttemptRecord]]:
    """One chat and its attempts, oldest first, the one in flight (its claim) last;
    :class:`NotFound` when there is no such chat."""
    async with ledger.read() as conn:
        row = (await conn.execute(sa.select(chats).where(chats.c.chat_id == chat_id))).first()
        if row is None:
            raise NotFound(f"no chat {chat_id!r} in the ledger")
        history = await conn.execute(
            sa.select(attempts)
            .where(attempts.c.chat_id == chat_id)
            .order_by(attempts.c.started_at, attempts.c.id)
        )
        record = ChatRecord(**row._mapping)
        shown = [AttemptRecord(**a._mapping) for a in history]
    in_flight = in_flight_attempt(record)
    if in_flight is not None and all(a.id != in_flight.id for a in shown):
        shown.append(in_flight)
    return record, shown


def in_flight_attempt(chat: ChatRecord) -> AttemptRecord | None:
    """The attempt a chat's open claim stands for (outcome ``started``): its row is written
    only with its outcome, so until then the claim columns are the attempt."""
    if chat.claim_attempt_id is None or chat.claim_started_at is None:
        return None
    return AttemptRecord(
        id=chat.claim_attempt_id,
        chat_id=chat.chat_id,
        line=chat.line,
        started_at=chat.claim_started_at,
        finished_at=None,
        outcome=Outcome.started,
        http_status=None,
        error_code=None,
        error_message=None,
        trace_id=None,
        latency_ms=None,
        tries=0,
        instance=chat.claimed_by or "",
        forced=bool(chat.claim_forced),
    )
