"""Whether the ledger answers at all, for readiness."""

from __future__ import annotations

import sqlalchemy as sa

from scheduler.ledger.engine import Ledger


async def ping(ledger: Ledger) -> None:
    """One round trip to the database; LedgerUnavailable (or OSError) when it does not answer."""
    async with ledger.read() as conn:
        await conn.execute(sa.text("SELECT 1"))
