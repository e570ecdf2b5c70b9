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

from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.chat import AttemptFinish, ChatState, ChatUpdate
from scheduler.ledger.dialects import LedgerDialect, dialect_named
from scheduler.ledger.driver import Driver, driver_of

__all__ = ["AttemptFinish", "ChatState", "ChatUpdate", "ClaimSQL"]


class ClaimSQL:
    """The claim protocol's statements on one connection, in its transaction."""

    def __init__(self, conn: AsyncConnection, db: Driver, dialect: LedgerDialect) -> None:
        self.conn = conn
        self.db = db
        self.dialect = dialect

    @classmethod
    async def open(cls, conn: AsyncConnection) -> ClaimSQL:
        """The statements on ``conn``'s driver connection, in its transaction."""
        return cls(conn, await driver_of(conn), dialect_named(conn.dialect.name))

    async def due(self, now: datetime, limit: int) -> list[ChatState]:
        return await self.dialect.due(self.db, now, limit)

    async def chats(self, chat_ids: Sequence[str], *, lock: bool = False) -> list[ChatState]:
        return await self.dialect.chats(self.db, chat_ids, lock=lock)

    async def expired(self, now: datetime, limit: int) -> list[ChatState]:
        return await self.dialect.expired(self.db, now, limit)

    async def reschedule(self, rows: Sequence[tuple[str, datetime | None]]) -> None:
        await self.dialect.reschedule(self.db, rows)

    async def start_attempts(
        self,
        chats: Sequence[ChatState],
        *,
        now: datetime,
        instance: str,
        lease_end: datetime,
        forced: bool,
    ) -> dict[str, int]:
        return await self.dialect.start_attempts(
            self.db, chats, now=now, instance=instance, lease_end=lease_end, forced=forced
        )

    async def finish_attempts(self, rows: Sequence[AttemptFinish]) -> None:
        await self.dialect.finish_attempts(self.db, rows)

    async def update_chats(self, rows: Sequence[ChatUpdate], now: datetime) -> None:
        await self.dialect.update_chats(self.db, rows, now)
