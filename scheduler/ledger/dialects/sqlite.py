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
TOP_ATTEMPT = "SELECT max(id) FROM share_attempts"
INSERT_ATTEMPTS = (
    "INSERT INTO share_attempts (id, chat_id, line, started_at, outcome, instance, tries, forced)"
    " VALUES (?, ?, ?, ?, 'started', ?, 0, ?)"
)
# Rows per lease UPDATE: (chat id, attempt id) per row, within the parameter cap.
LEASE_ROWS = 400
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


# How each column of a fact row arrives from SQLite: times as text, booleans as 0/1.
_CONVERTERS: tuple[Callable[[Any], Any] | None, ...] = (
    *(
        from_ledger_text if _is_time(name) else bool if name == "is_group" else None
        for name in FACT_COLUMNS
    ),
    *(
        from_ledger_text if _is_time(name) else bool if name == "paused" else None
        for name in LINE_FACT_COLUMNS
    ),
    None,  # claimed_by
)


def _chat_state(row: Sequence[Any]) -> ChatState:
    return ChatState(
        *[
            value if convert is None or value is None else convert(value)
            for convert, value in zip(_CONVERTERS, row, strict=True)
        ]
    )


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
        # This transaction holds the write lock, so max(id) cannot move under us.
        top = (await db.fetch(TOP_ATTEMPT, ()))[0][0]
        first = int(top or 0) + 1
        attempt_of = {c.chat_id: first + i for i, c in enumerate(chats)}
        started = bind_time(now)
        await db.execute_many(
            INSERT_ATTEMPTS,
            [(attempt_of[c.chat_id], c.chat_id, c.line, started, instance, forced) for c in chats],
        )
        end = bind_time(lease_end)
        for start in range(0, len(chats), LEASE_ROWS):
            part = chats[start : start + LEASE_ROWS]
            await db.execute(
                lease_update(len(part)),
                (
                    *(x for c in part for x in (c.chat_id, attempt_of[c.chat_id])),
                    instance,
                    end,
                    end,
                ),
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
