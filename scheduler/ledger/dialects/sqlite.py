"""The ledger's statements on SQLite: times as UTC text (``scheduler.times``), booleans as
0/1, no row locks (a write transaction holds the database's one write lock), and at most
32,766 parameters per statement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.dml import Insert

from scheduler.core.chat import AttemptFinish, ChatState, ChatUpdate
from scheduler.ledger.dialects.base import FACT_COLUMNS, LINE_FACT_COLUMNS, SELECT_FACTS
from scheduler.ledger.driver import Driver, chunks
from scheduler.times import from_ledger_text, to_ledger_text

DUE = f"{SELECT_FACTS} WHERE c.next_share_at <= ? ORDER BY c.next_share_at LIMIT ?"
# Rows per statement of the claim: a batch (500 by default) in one statement each, within
# SQLite's cap of 32,766 parameters per statement (3 per intent row, 2 per lease).
CLAIM_ROWS = 5000


def insert_attempts(rows: int) -> str:
    """Intent rows for ``rows`` chats: parameters (chat id, line) per row, then started_at,
    instance and forced; the ids come from the table's rowid, returned with each chat id."""
    return (
        "INSERT INTO share_attempts (chat_id, line, started_at, outcome, instance, tries, forced)"
        " SELECT v.column1, v.column2, ?, 'started', ?, 0, ?"
        f" FROM (VALUES {', '.join(['(?, ?)'] * rows)}) AS v"
        " RETURNING chat_id, id"
    )


_EXPIRED = (
    f"{SELECT_FACTS} WHERE c.claim_attempt_id IS NOT NULL AND c.claim_expires_at <= ? LIMIT ?"
)
_FINISH_ATTEMPTS = (
    "UPDATE share_attempts SET outcome = ?, finished_at = ?, http_status = ?,"
    " error_code = ?, error_message = ?, trace_id = ?, latency_ms = ?, tries = ?"
    " WHERE id = ? AND outcome = 'started'"
)
_UPDATE_CHATS = (
    "UPDATE chats SET last_shared_at = ?, share_count = ?, status = ?,"
    " not_before = ?, consecutive_failures = ?, last_error = ?, next_share_at = ?,"
    " claimed_by = NULL, claim_attempt_id = NULL, claim_expires_at = NULL,"
    " updated_at = ? WHERE chat_id = ?"
)


def lease_update(rows: int) -> str:
    """Leases for ``rows`` chats: parameters (chat id, attempt id) per row, then claimed_by,
    claim_expires_at and next_share_at."""
    return (
        f"WITH v(chat_id, aid) AS (VALUES {', '.join(['(?, ?)'] * rows)})"
        " UPDATE chats SET claimed_by = ?, claim_attempt_id = v.aid,"
        " claim_expires_at = ?, next_share_at = ?"
        " FROM v WHERE chats.chat_id = v.chat_id"
    )


def bind_time(value: datetime | None) -> str | None:
    return None if value is None else to_ledger_text(value)


def _is_time(name: str) -> bool:
    return name.endswith("_at") or name == "not_before"


# The columns of a fact row that arrive from SQLite as text (times) or 0/1 (booleans), by
# position, with their conversion; the others arrive as they are.
_CONVERTERS: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
    (position, convert)
    for position, name in enumerate((*FACT_COLUMNS, *(f"line_{c}" for c in LINE_FACT_COLUMNS)))
    for convert in (
        from_ledger_text
        if _is_time(name)
        else bool
        if name in ("is_group", "line_paused")
        else None,
    )
    if convert is not None
)


def _chat_state(row: Sequence[Any]) -> ChatState:
    values = list(row)
    for position, convert in _CONVERTERS:
        value = values[position]
        if value is not None:
            values[position] = convert(value)
    return ChatState._make(values)


class SqliteDialect:
    name = "sqlite"

    def bind_time(self, value: datetime | None) -> object:
        return bind_time(value)

    def insert_ignore(self, table: sa.Table) -> Insert:
        return sqlite.insert(table).on_conflict_do_nothing()

    def upsert(self, table: sa.Table) -> sqlite.Insert:
        return sqlite.insert(table)

    async def _rows(self, db: Driver, sql: str, params: Sequence[object]) -> list[ChatState]:
        return [_chat_state(row) for row in await db.fetch(sql, params)]

    async def due(self, db: Driver, now: datetime, limit: int) -> list[ChatState]:
        return await self._rows(db, DUE, (bind_time(now), limit))

    async def chats(
        self, db: Driver, chat_ids: Sequence[str], *, lock: bool = False
    ) -> list[ChatState]:
        # No row locks to take: this transaction holds the write lock (or reads a snapshot).
        ids = list(dict.fromkeys(chat_ids))
        out: list[ChatState] = []
        for part in chunks(ids):
            out += await self._rows(
                db,
                f"{SELECT_FACTS} WHERE c.chat_id IN ({', '.join('?' * len(part))})",
                tuple(part),
            )
        return out

    async def expired(self, db: Driver, now: datetime, limit: int) -> list[ChatState]:
        return await self._rows(db, _EXPIRED, (bind_time(now), limit))

    async def reschedule(self, db: Driver, rows: Sequence[tuple[str, datetime | None]]) -> None:
        await db.execute_many(
            "UPDATE chats SET next_share_at = ? WHERE chat_id = ?",
            [(bind_time(nxt), chat_id) for chat_id, nxt in rows],
        )

    async def start_attempts(
        self,
        db: Driver,
        chats: Sequence[ChatState],
        *,
        now: datetime,
        instance: str,
        lease_end: datetime,
        forced: bool,
    ) -> dict[str, int]:
        if not chats:
            return {}
        attempt_of: dict[str, int] = {}
        started = bind_time(now)
        end = bind_time(lease_end)
        for first in range(0, len(chats), CLAIM_ROWS):
            part = chats[first : first + CLAIM_ROWS]
            returned = await db.fetch(
                insert_attempts(len(part)),
                (started, instance, forced, *(x for c in part for x in (c.chat_id, c.line))),
            )
            ids = {str(chat_id): int(aid) for chat_id, aid in returned}
            attempt_of.update(ids)
            await db.execute(
                lease_update(len(part)),
                (*(x for c in part for x in (c.chat_id, ids[c.chat_id])), instance, end, end),
            )
        return attempt_of

    async def finish_attempts(self, db: Driver, rows: Sequence[AttemptFinish]) -> None:
        await db.execute_many(
            _FINISH_ATTEMPTS,
            [
                (
                    str(r.outcome),
                    bind_time(r.finished_at),
                    r.http_status,
                    r.error_code,
                    r.error_message,
                    r.trace_id,
                    r.latency_ms,
                    r.tries,
                    r.attempt_id,
                )
                for r in rows
            ],
        )

    async def update_chats(self, db: Driver, rows: Sequence[ChatUpdate], now: datetime) -> None:
        stamp = bind_time(now)
        await db.execute_many(
            _UPDATE_CHATS,
            [
                (
                    bind_time(r.last_shared_at),
                    r.share_count,
                    str(r.status),
                    bind_time(r.not_before),
                    r.consecutive_failures,
                    r.last_error,
                    bind_time(r.next_share_at),
                    stamp,
                    r.chat_id,
                )
                for r in rows
            ],
        )
