"""The hot statements of the claim protocol, through the driver, for one connection's database.

A pass claims and records hundreds of chats per transaction. Through SQLAlchemy Core, the
statement compilation and the per-value type processing of those rows cost several times the
database's own work (``python -m bench.due_query``), so these few statements go to the driver
(:mod:`scheduler.ledger.driver`) as plain SQL with plain parameters: one round trip per
statement, whatever the batch size. Their SQL differs per database: it lives in
:mod:`scheduler.ledger.dialects`, one module per database behind one interface.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.ledger.dialects import LedgerDialect, dialect_named
from scheduler.ledger.driver import Driver, driver_of

__all__ = ["ClaimSQL"]


class ClaimSQL:
    """One transaction's connection, its driver connection, and its database's dialect: the
    claim protocol's statements are ``sql.dialect.<statement>(sql.db, ...)``."""

    def __init__(self, conn: AsyncConnection, db: Driver, dialect: LedgerDialect) -> None:
        self.conn = conn
        self.db = db
        self.dialect = dialect

    @classmethod
    async def open(cls, conn: AsyncConnection) -> ClaimSQL:
        """The statements on ``conn``'s driver connection, in its transaction."""
        return cls(conn, await driver_of(conn), dialect_named(conn.dialect.name))
