"""The hot statements of the claim protocol, through the driver, for one connection's database.

A pass claims and records hundreds of chats per transaction. Through SQLAlchemy Core, the
statement compilation and the per-value type processing of those rows cost several times the
database's own work (``python -m bench.due_query``), so these few statements go to the driver
(:mod:`scheduler.ledger.driver`) as plain SQL with plain parameters: one round trip per
statement, whatever the batch size. Their SQL differs per database: it lives in
:mod:`scheduler.ledger.dialects`, one module per database behind one interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.chat import ChatState
from scheduler.ledger.dialects import LedgerDialect, dialect_named
from scheduler.ledger.driver import Driver, Statement, driver_of

__all__ = ["ClaimSQL", "Results"]

# The rows of each statement run together, in order (empty for those that return none).
Results = list[list[Sequence[Any]]]


class ClaimSQL:
    """One transaction's connection, its driver connection, and its database's dialect, with
    the claim protocol's statements run on it: one at a time (``await sql.due(...)``), or
    several in one trip (``await sql.run([...])`` of the dialect's statements, then
    :meth:`states` / :meth:`attempt_ids` of their rows) where the caller needs none of their
    results before the last."""

    def __init__(self, conn: AsyncConnection, db: Driver, dialect: LedgerDialect) -> None:
        self.conn = conn
        self.db = db
        self.dialect = dialect

    @classmethod
    async def open(cls, conn: AsyncConnection) -> ClaimSQL:
        """The statements on ``conn``'s driver connection, in its transaction."""
        return cls(conn, await driver_of(conn), dialect_named(conn.dialect.name))

    async def run(self, statements: Sequence[Statement]) -> Results:
        """Run ``statements`` in order, in one trip to the database where it can."""
        return await self.db.run_all(statements) if statements else []

    def states(self, results: Results) -> list[ChatState]:
        """The chats read by statements of :meth:`LedgerDialect.due` or ``chats``."""
        return self.dialect.states(row for rows in results for row in rows)

    def taken(self, rows: Sequence[Sequence[Any]]) -> list[tuple[ChatState, int | None]]:
        """The chats read by :meth:`LedgerDialect.claim_due`, each with the attempt id of the
        claim taken on it (``None``: an expired claim, left to resolve)."""
        states = self.dialect.states(row[:-1] for row in rows)
        return [(state, row[-1]) for state, row in zip(states, rows, strict=True)]

    @staticmethod
    def attempt_ids(results: Results) -> dict[str, int]:
        """Chat id -> attempt id, of the statements of :meth:`LedgerDialect.claim`."""
        return {str(row[0]): int(row[1]) for rows in results for row in rows}

    async def due(self, now: datetime, limit: int) -> list[ChatState]:
        return self.states(await self.run([self.dialect.due(now, limit)]))

    async def chats(self, chat_ids: Sequence[str], *, lock: bool = False) -> list[ChatState]:
        return self.states(await self.run(self.dialect.chats(chat_ids, lock=lock)))

    async def reschedule(self, rows: Sequence[tuple[str, datetime | None]]) -> None:
        if rows:
            await self.run([self.dialect.reschedule(rows)])

    async def claim(
        self,
        chats: Sequence[ChatState],
        *,
        now: datetime,
        instance: str,
        lease_end: datetime,
        forced: bool,
    ) -> dict[str, int]:
        statements = self.dialect.claim(
            chats, now=now, instance=instance, lease_end=lease_end, forced=forced
        )
        return self.attempt_ids(await self.run(statements))
