"""The ledger's statements on PostgreSQL: ``timestamptz`` columns (psycopg binds and returns
aware datetimes), row locks that replicas skip, and whole batches as arrays (``unnest``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.dml import Insert

from scheduler.core.chat import AttemptFinish, ChatState, ChatUpdate
from scheduler.ledger.dialects.base import SELECT_FACTS
from scheduler.ledger.driver import Driver

# Replicas skip each other's rows instead of waiting on them.
DUE = (
    f"{SELECT_FACTS} WHERE c.next_share_at <= %s ORDER BY c.next_share_at LIMIT %s"
    " FOR UPDATE OF c SKIP LOCKED"
)
# Intent rows and leases in one statement; ids from the sequence, returned per chat.
START_ATTEMPTS = (
    "WITH v AS ("
    " SELECT u.chat_id, u.line, nextval('share_attempts_id_seq') AS aid"
    " FROM unnest(%s::text[], %s::text[]) AS u(chat_id, line)"
    "), ins AS ("
    " INSERT INTO share_attempts"
    " (id, chat_id, line, started_at, outcome, instance, tries, forced)"
    " SELECT aid, chat_id, line, %s, 'started', %s, 0, %s FROM v"
    ") UPDATE chats SET claimed_by = %s, claim_attempt_id = v.aid,"
    " claim_expires_at = %s, next_share_at = %s"
    " FROM v WHERE chats.chat_id = v.chat_id RETURNING v.chat_id, v.aid"
)
_EXPIRED = (
    f"{SELECT_FACTS} WHERE c.claim_attempt_id IS NOT NULL"
    " AND c.claim_expires_at <= %s LIMIT %s FOR UPDATE OF c SKIP LOCKED"
)
_FINISH_ATTEMPTS = (
    "UPDATE share_attempts a SET outcome = v.outcome, finished_at = v.finished_at,"
    " http_status = v.http_status, error_code = v.error_code,"
    " error_message = v.error_message, trace_id = v.trace_id,"
    " latency_ms = v.latency_ms, tries = v.tries"
    " FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::int[], %s::int[],"
    " %s::text[], %s::text[], %s::float8[], %s::int[])"
    " AS v(id, outcome, finished_at, http_status, error_code, error_message, trace_id,"
    " latency_ms, tries)"
    " WHERE a.id = v.id AND a.outcome = 'started'"
)
_UPDATE_CHATS = (
    "UPDATE chats c SET last_shared_at = v.last_shared_at, share_count = v.share_count,"
    " status = v.status, not_before = v.not_before,"
    " consecutive_failures = v.consecutive_failures, last_error = v.last_error,"
    " next_share_at = v.next_share_at, claimed_by = NULL, claim_attempt_id = NULL,"
    " claim_expires_at = NULL, updated_at = %s"
    " FROM unnest(%s::text[], %s::timestamptz[], %s::int[], %s::text[],"
    " %s::timestamptz[], %s::int[], %s::text[], %s::timestamptz[])"
    " AS v(chat_id, last_shared_at, share_count, status, not_before,"
    " consecutive_failures, last_error, next_share_at)"
    " WHERE c.chat_id = v.chat_id"
)


class PostgresDialect:
    name = "postgresql"

    def bind_time(self, value: datetime | None) -> object:
        return value

    def insert_ignore(self, table: sa.Table) -> Insert:
        return postgresql.insert(table).on_conflict_do_nothing()

    def upsert(self, table: sa.Table) -> postgresql.Insert:
        return postgresql.insert(table)

    async def _rows(self, db: Driver, sql: str, params: Sequence[object]) -> list[ChatState]:
        return [ChatState._make(row) for row in await db.fetch(sql, params)]

    async def due(self, db: Driver, now: datetime, limit: int) -> list[ChatState]:
        return await self._rows(db, DUE, (now, limit))

    async def chats(
        self, db: Driver, chat_ids: Sequence[str], *, lock: bool = False
    ) -> list[ChatState]:
        ids = list(dict.fromkeys(chat_ids))
        if not ids:
            return []
        suffix = " FOR UPDATE OF c SKIP LOCKED" if lock else ""
        return await self._rows(db, f"{SELECT_FACTS} WHERE c.chat_id = ANY(%s){suffix}", (ids,))

    async def expired(self, db: Driver, now: datetime, limit: int) -> list[ChatState]:
        return await self._rows(db, _EXPIRED, (now, limit))

    async def reschedule(self, db: Driver, rows: Sequence[tuple[str, datetime | None]]) -> None:
        await db.execute_many(
            "UPDATE chats SET next_share_at = %s WHERE chat_id = %s",
            [(nxt, chat_id) for chat_id, nxt in rows],
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
        returned = await db.fetch(
            START_ATTEMPTS,
            (
                [c.chat_id for c in chats],
                [c.line for c in chats],
                now,
                instance,
                forced,
                instance,
                lease_end,
                lease_end,
            ),
        )
        return {row[0]: int(row[1]) for row in returned}

    async def finish_attempts(self, db: Driver, rows: Sequence[AttemptFinish]) -> None:
        if not rows:
            return
        await db.execute(
            _FINISH_ATTEMPTS,
            (
                [r.attempt_id for r in rows],
                [str(r.outcome) for r in rows],
                [r.finished_at for r in rows],
                [r.http_status for r in rows],
                [r.error_code for r in rows],
                [r.error_message for r in rows],
                [r.trace_id for r in rows],
                [r.latency_ms for r in rows],
                [r.tries for r in rows],
            ),
        )

    async def update_chats(self, db: Driver, rows: Sequence[ChatUpdate], now: datetime) -> None:
        if not rows:
            return
        await db.execute(
            _UPDATE_CHATS,
            (
                now,
                [r.chat_id for r in rows],
                [r.last_shared_at for r in rows],
                [r.share_count for r in rows],
                [str(r.status) for r in rows],
                [r.not_before for r in rows],
                [r.consecutive_failures for r in rows],
                [r.last_error for r in rows],
                [r.next_share_at for r in rows],
            ),
        )
