"""The ledger's statements on PostgreSQL: ``timestamptz`` columns (psycopg binds and returns
aware datetimes), row locks that replicas skip, and whole batches as arrays (``unnest``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.dml import Insert

from scheduler.core.chat import AttemptRow, ChatState, ChatUpdate
from scheduler.ledger.dialects.base import (
    CLAIM_COLUMNS,
    FACT_COLUMNS,
    INSERT_ATTEMPT,
    NOT_CLAIMED,
    ON_ATTEMPT_CONFLICT,
    RESCHEDULE,
    SELECT_FACTS,
    fact_list,
)
from scheduler.ledger.driver import Statement

# Replicas skip each other's rows instead of waiting on them. A claimed chat keeps its
# ``next_share_at`` (the claim is a HOT update), so live claims are left out by a filter on the
# claim columns. After waiting for a row lock whose holder committed, PostgreSQL re-checks
# this WHERE on the row's newest version: a chat another replica has just claimed is dropped.
DUE = (
    f"{SELECT_FACTS} WHERE c.next_share_at <= %s AND {NOT_CLAIMED.format(now='%s')}"
    " ORDER BY c.next_share_at LIMIT %s FOR UPDATE OF c SKIP LOCKED"
)
# The named chats' claim (``claim_batch`` of chat ids): an attempt id from the attempts'
# sequence per chat, and the claim columns (the intent) on the chat; no attempt row until the
# outcome. No indexed column changes, so the new row version stays in its page and no index
# gets an entry (HOT).
CLAIM = (
    "UPDATE chats SET claimed_by = %s, claim_attempt_id = nextval('share_attempts_id_seq'),"
    " claim_expires_at = %s, claim_started_at = %s, claim_forced = %s"
    " WHERE chat_id = ANY(%s) RETURNING chat_id, claim_attempt_id"
)
# The due chats' claim in one statement: the due query's range read and row locks (``due``),
# the claim of those without a claim, and their facts as they were read, with the attempt id
# each got (none for a chat under an expired claim: the caller resolves it). One read of the
# rows instead of a read, then an update finding them again by their ids: the claim finds
# each row by its ``ctid`` (a TID scan, no index probe), which stays the row's own from the
# lock to the update (a locked row gets no new version but this statement's).
CLAIM_DUE = (
    "WITH due AS (SELECT c.ctid, "
    + ", ".join(f"c.{name}" for name in (*FACT_COLUMNS, *CLAIM_COLUMNS))
    + f" FROM chats c WHERE c.next_share_at <= %s AND {NOT_CLAIMED.format(now='%s')}"
    " ORDER BY c.next_share_at LIMIT %s FOR UPDATE OF c SKIP LOCKED),"
    " claimed AS (UPDATE chats SET claimed_by = %s,"
    " claim_attempt_id = nextval('share_attempts_id_seq'), claim_expires_at = %s,"
    " claim_started_at = %s, claim_forced = false FROM due"
    " WHERE chats.ctid = due.ctid AND due.claim_attempt_id IS NULL"
    " RETURNING chats.chat_id, chats.claim_attempt_id)"
    f" SELECT {fact_list('due', 'l')}, claimed.claim_attempt_id FROM due"
    " LEFT JOIN claimed ON claimed.chat_id = due.chat_id"
    " LEFT JOIN lines l ON l.number = due.line ORDER BY due.next_share_at"
)
_INSERT_ATTEMPTS = (
    INSERT_ATTEMPT
    + " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[],"
    " %s::text[], %s::bool[], %s::text[], %s::timestamptz[], %s::int[], %s::int[],"
    " %s::text[], %s::text[], %s::float8[], %s::int[])" + ON_ATTEMPT_CONFLICT
)
_UPDATE_CHATS = (
    "UPDATE chats c SET last_shared_at = v.last_shared_at, share_count = v.share_count,"
    " status = v.status, not_before = v.not_before,"
    " consecutive_failures = v.consecutive_failures, last_error = v.last_error,"
    " next_share_at = v.next_share_at, claimed_by = NULL, claim_attempt_id = NULL,"
    " claim_expires_at = NULL, claim_started_at = NULL, claim_forced = NULL, updated_at = %s"
    " FROM unnest(%s::text[], %s::timestamptz[], %s::int[], %s::text[],"
    " %s::timestamptz[], %s::int[], %s::text[], %s::timestamptz[])"
    " AS v(chat_id, last_shared_at, share_count, status, not_before,"
    " consecutive_failures, last_error, next_share_at)"
    " WHERE c.chat_id = v.chat_id"
)


class PostgresDialect:
    name = "postgresql"
    claims_as_it_reads = True

    def bind_time(self, value: datetime | None) -> object:
        return value

    def insert_ignore(self, table: sa.Table) -> Insert:
        return postgresql.insert(table).on_conflict_do_nothing()

    def upsert(self, table: sa.Table) -> postgresql.Insert:
        return postgresql.insert(table)

    def states(self, rows: Iterable[Sequence[Any]]) -> list[ChatState]:
        return [ChatState._make(row) for row in rows]

    def due(self, now: datetime, limit: int) -> Statement:
        return Statement(DUE, (now, now, limit), rows=True)

    def claim_due(
        self, now: datetime, limit: int, *, instance: str, lease_end: datetime
    ) -> Statement:
        return Statement(CLAIM_DUE, (now, now, limit, instance, lease_end, now), rows=True)

    def chats(self, chat_ids: Sequence[str], *, lock: bool = False) -> list[Statement]:
        ids = list(dict.fromkeys(chat_ids))
        if not ids:
            return []
        suffix = " FOR UPDATE OF c SKIP LOCKED" if lock else ""
        return [Statement(f"{SELECT_FACTS} WHERE c.chat_id = ANY(%s){suffix}", (ids,), rows=True)]

    def reschedule(self, rows: Sequence[tuple[str, datetime | None]]) -> Statement:
        return Statement(
            RESCHEDULE.format(mark="%s"),
            [(nxt, chat_id) for chat_id, nxt in rows],
            many=True,
        )

    def claim(
        self,
        chats: Sequence[ChatState],
        *,
        now: datetime,
        instance: str,
        lease_end: datetime,
        forced: bool,
    ) -> list[Statement]:
        if not chats:
            return []
        ids = [c.chat_id for c in chats]
        return [Statement(CLAIM, (instance, lease_end, now, forced, ids), rows=True)]

    def insert_attempts(self, rows: Sequence[AttemptRow]) -> Statement:
        return Statement(
            _INSERT_ATTEMPTS,
            (
                [r.attempt_id for r in rows],
                [r.chat_id for r in rows],
                [r.line for r in rows],
                [r.started_at for r in rows],
                [r.instance for r in rows],
                [r.forced for r in rows],
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

    def update_chats(self, rows: Sequence[ChatUpdate], now: datetime) -> Statement:
        return Statement(
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
