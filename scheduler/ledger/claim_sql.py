"""Driver-level SQL for the claim protocol's hot statements, per database.

A pass claims and records hundreds of chats per transaction. Through SQLAlchemy Core, the
statement compilation and the per-value type processing of those rows cost several times the
database's own work (``python -m bench.due_query``), so these few statements go to the driver
(:mod:`scheduler.ledger.driver`) as plain SQL with plain parameters: one round trip per
statement, whatever the batch size.

Timestamps: PostgreSQL columns are ``timestamptz`` and the driver returns aware datetimes;
SQLite stores UTC as ``YYYY-MM-DD HH:MM:SS.ffffff`` text, the same format the models' type
writes, so the two paths can read and write the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.ledger.driver import Driver, chunks, driver_of

_FACT_COLUMNS = (
    "chat_id",
    "line",
    "recipients",
    "is_group",
    "service",
    "first_outbound_at",
    "last_outbound_at",
    "last_inbound_at",
    "last_shared_at",
    "share_count",
    "status",
    "not_before",
    "consecutive_failures",
    "next_share_at",
    "claim_attempt_id",
    "claim_expires_at",
    "last_error",
)
_SELECT_FACTS = (
    "SELECT "
    + ", ".join(f"c.{name}" for name in _FACT_COLUMNS)
    + ", l.card_state, l.paused, l.timezone, l.probe_at"
    + " FROM chats c LEFT JOIN lines l ON l.number = c.line"
)


def _parse_sqlite_time(value: str) -> datetime:
    # "+00:00" makes the parser return an aware UTC datetime in one C call.
    return datetime.fromisoformat(value + "+00:00")


# How each column of a fact row arrives from SQLite: timestamps as text, booleans as 0/1.
_SQLITE_CONVERTERS: tuple[Callable[[Any], Any] | None, ...] = (
    *(
        _parse_sqlite_time
        if name.endswith("_at") or name in ("not_before", "claim_expires_at")
        else bool
        if name == "is_group"
        else None
        for name in _FACT_COLUMNS
    ),
    None,
    bool,
    None,
    _parse_sqlite_time,
)


@dataclass(slots=True)
class ChatState:
    """What the rule and the claim protocol read of one chat and its line."""

    chat_id: str
    line: str | None
    recipients: str | None
    is_group: bool
    service: str | None
    first_outbound_at: datetime | None
    last_outbound_at: datetime | None
    last_inbound_at: datetime | None
    last_shared_at: datetime | None
    share_count: int
    status: str
    not_before: datetime | None
    consecutive_failures: int
    next_share_at: datetime | None
    claim_attempt_id: int | None
    claim_expires_at: datetime | None
    last_error: str | None
    line_card_state: str | None
    line_paused: bool | None
    line_timezone: str | None
    line_probe_at: datetime | None


# The claim's statements, named so that bench.due_query can time them through the bare drivers.
SQLITE_DUE = f"{_SELECT_FACTS} WHERE c.next_share_at <= ? ORDER BY c.next_share_at LIMIT ?"
# Replicas skip each other's rows instead of waiting on them.
PG_DUE = (
    f"{_SELECT_FACTS} WHERE c.next_share_at <= %s ORDER BY c.next_share_at LIMIT %s"
    " FOR UPDATE OF c SKIP LOCKED"
)
# Intent rows and leases in one statement; ids from the sequence, returned per chat.
PG_START_ATTEMPTS = (
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
SQLITE_TOP_ATTEMPT = "SELECT max(id) FROM share_attempts"
SQLITE_INSERT_ATTEMPTS = (
    "INSERT INTO share_attempts (id, chat_id, line, started_at, outcome, instance, tries, forced)"
    " VALUES (?, ?, ?, ?, 'started', ?, 0, ?)"
)
# Rows per lease UPDATE on SQLite, whose statements take at most 32,766 parameters.
SQLITE_LEASE_ROWS = 400


def sqlite_lease_update(rows: int) -> str:
    """Leases for ``rows`` chats: parameters (chat id, attempt id) per row, then claimed_by,
    claim_expires_at and next_share_at."""
    return (
        f"WITH v(chat_id, aid) AS (VALUES {', '.join(['(?, ?)'] * rows)})"
        " UPDATE chats SET claimed_by = ?, claim_attempt_id = v.aid,"
        " claim_expires_at = ?, next_share_at = ?"
        " FROM v WHERE chats.chat_id = v.chat_id"
    )


def sqlite_time(value: datetime | None) -> str | None:
    """A UTC datetime as SQLite stores it (the text the models' column type writes)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class ClaimSQL:
    """The hot statements for one connection's database."""

    def __init__(self, conn: AsyncConnection, db: Driver) -> None:
        self.conn = conn
        self.db = db
        self.sqlite = conn.dialect.name == "sqlite"

    @classmethod
    async def open(cls, conn: AsyncConnection) -> ClaimSQL:
        """The statements on ``conn``'s driver connection, in its transaction."""
        return cls(conn, await driver_of(conn))

    def _t(self, value: datetime | None) -> Any:
        return sqlite_time(value) if self.sqlite else value

    def _state(self, row: Sequence[Any]) -> ChatState:
        if self.sqlite:
            return ChatState(
                *[
                    value if convert is None or value is None else convert(value)
                    for convert, value in zip(_SQLITE_CONVERTERS, row, strict=True)
                ]
            )
        return ChatState(*row)

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[ChatState]:
        return [self._state(row) for row in await self.db.fetch(sql, params)]

    async def due(self, now: datetime, limit: int) -> list[ChatState]:
        """The ``limit`` chats due soonest, by the ``next_share_at`` index; locked on PostgreSQL."""
        if self.sqlite:
            return await self._rows(SQLITE_DUE, (self._t(now), limit))
        return await self._rows(PG_DUE, (now, limit))

    async def chats(self, chat_ids: Sequence[str], *, lock: bool = False) -> list[ChatState]:
        """The named chats (those that exist); ``lock`` skips rows locked by others."""
        ids = list(dict.fromkeys(chat_ids))
        if not ids:
            return []
        if self.sqlite:
            out: list[ChatState] = []
            # SQLite caps the number of parameters of one statement.
            for part in chunks(ids):
                out += await self._rows(
                    f"{_SELECT_FACTS} WHERE c.chat_id IN ({', '.join('?' * len(part))})",
                    tuple(part),
                )
            return out
        suffix = " FOR UPDATE OF c SKIP LOCKED" if lock else ""
        return await self._rows(f"{_SELECT_FACTS} WHERE c.chat_id = ANY(%s){suffix}", (ids,))

    async def expired(self, now: datetime, limit: int) -> list[ChatState]:
        """Chats whose claim's lease ran out (its owner crashed mid-call)."""
        if self.sqlite:
            return await self._rows(
                f"{_SELECT_FACTS} WHERE c.claim_attempt_id IS NOT NULL"
                " AND c.claim_expires_at <= ? LIMIT ?",
                (self._t(now), limit),
            )
        return await self._rows(
            f"{_SELECT_FACTS} WHERE c.claim_attempt_id IS NOT NULL"
            " AND c.claim_expires_at <= %s LIMIT %s FOR UPDATE OF c SKIP LOCKED",
            (now, limit),
        )

    async def reschedule(self, rows: Sequence[tuple[str, datetime | None]]) -> None:
        """Correct ``next_share_at`` of chats found not due after all."""
        mark = "?" if self.sqlite else "%s"
        await self.db.execute_many(
            f"UPDATE chats SET next_share_at = {mark} WHERE chat_id = {mark}",
            [(self._t(nxt), chat_id) for chat_id, nxt in rows],
        )

    async def start_attempts(
        self,
        chats: Sequence[ChatState],
        *,
        now: datetime,
        instance: str,
        lease_end: datetime,
        forced: bool,
    ) -> dict[str, int]:
        """Intent rows and leases for ``chats``; returns chat id -> attempt id."""
        if not chats:
            return {}
        if not self.sqlite:
            returned = await self.db.fetch(
                PG_START_ATTEMPTS,
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
        # SQLite: this transaction holds the write lock, so max(id) cannot move under us.
        top = (await self.db.fetch(SQLITE_TOP_ATTEMPT, ()))[0][0]
        first = int(top or 0) + 1
        attempt_of = {c.chat_id: first + i for i, c in enumerate(chats)}
        started = self._t(now)
        await self.db.execute_many(
            SQLITE_INSERT_ATTEMPTS,
            [(attempt_of[c.chat_id], c.chat_id, c.line, started, instance, forced) for c in chats],
        )
        end = self._t(lease_end)
        for start in range(0, len(chats), SQLITE_LEASE_ROWS):
            part = chats[start : start + SQLITE_LEASE_ROWS]
            await self.db.execute(
                sqlite_lease_update(len(part)),
                (
                    *(x for c in part for x in (c.chat_id, attempt_of[c.chat_id])),
                    instance,
                    end,
                    end,
                ),
            )
        return attempt_of

    async def finish_attempts(self, rows: Sequence[AttemptFinish]) -> None:
        """Close ``started`` attempts; one already closed elsewhere keeps its verdict."""
        if not rows:
            return
        if self.sqlite:
            await self.db.execute_many(
                "UPDATE share_attempts SET outcome = ?, finished_at = ?, http_status = ?,"
                " error_code = ?, error_message = ?, trace_id = ?, latency_ms = ?, tries = ?"
                " WHERE id = ? AND outcome = 'started'",
                [
                    (
                        str(r.outcome),
                        self._t(r.finished_at),
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
            return
        await self.db.execute(
            "UPDATE share_attempts a SET outcome = v.outcome, finished_at = v.finished_at,"
            " http_status = v.http_status, error_code = v.error_code,"
            " error_message = v.error_message, trace_id = v.trace_id,"
            " latency_ms = v.latency_ms, tries = v.tries"
            " FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::int[], %s::int[],"
            " %s::text[], %s::text[], %s::float8[], %s::int[])"
            " AS v(id, outcome, finished_at, http_status, error_code, error_message, trace_id,"
            " latency_ms, tries)"
            " WHERE a.id = v.id AND a.outcome = 'started'",
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

    async def update_chats(self, rows: Sequence[ChatUpdate], now: datetime) -> None:
        """Write each chat's new facts and ``next_share_at``, and drop its claim."""
        if not rows:
            return
        if self.sqlite:
            stamp = self._t(now)
            await self.db.execute_many(
                "UPDATE chats SET last_shared_at = ?, share_count = ?, status = ?,"
                " not_before = ?, consecutive_failures = ?, last_error = ?, next_share_at = ?,"
                " claimed_by = NULL, claim_attempt_id = NULL, claim_expires_at = NULL,"
                " updated_at = ? WHERE chat_id = ?",
                [
                    (
                        self._t(r.last_shared_at),
                        r.share_count,
                        str(r.status),
                        self._t(r.not_before),
                        r.consecutive_failures,
                        r.last_error,
                        self._t(r.next_share_at),
                        stamp,
                        r.chat_id,
                    )
                    for r in rows
                ],
            )
            return
        await self.db.execute(
            "UPDATE chats c SET last_shared_at = v.last_shared_at, share_count = v.share_count,"
            " status = v.status, not_before = v.not_before,"
            " consecutive_failures = v.consecutive_failures, last_error = v.last_error,"
            " next_share_at = v.next_share_at, claimed_by = NULL, claim_attempt_id = NULL,"
            " claim_expires_at = NULL, updated_at = %s"
            " FROM unnest(%s::text[], %s::timestamptz[], %s::int[], %s::text[],"
            " %s::timestamptz[], %s::int[], %s::text[], %s::timestamptz[])"
            " AS v(chat_id, last_shared_at, share_count, status, not_before,"
            " consecutive_failures, last_error, next_share_at)"
            " WHERE c.chat_id = v.chat_id",
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


@dataclass(frozen=True, slots=True)
class AttemptFinish:
    attempt_id: int
    outcome: str
    finished_at: datetime
    tries: int
    http_status: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    trace_id: str | None = None
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ChatUpdate:
    chat_id: str
    last_shared_at: datetime | None
    share_count: int
    status: str
    not_before: datetime | None
    consecutive_failures: int
    last_error: str | None
    next_share_at: datetime | None
