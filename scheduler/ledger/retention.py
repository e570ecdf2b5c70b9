"""What the ledger forgets: finished share attempts past their retention.

Attempts are the history behind ``ledger show`` and the metrics; the sharing rule and the
claim protocol read chats only (an attempt in flight is its chat's claim, not a row; a
``started`` row left by an older version is never deleted here). Without a limit the table
grows by one row per chat per day for as long as the daemon runs.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from scheduler.core.status import Outcome
from scheduler.ledger.engine import Ledger
from scheduler.ledger.models import attempts_table

attempts = attempts_table

# Rows deleted per transaction: short transactions keep the SQLite writer free for the pass.
PRUNE_BATCH = 5000
_FINISHED = [outcome.value for outcome in Outcome if outcome != Outcome.started]


async def prune_attempts(ledger: Ledger, older_than: datetime, *, batch: int = PRUNE_BATCH) -> int:
    """Delete finished attempts started before ``older_than``; return how many."""
    removed = 0
    while True:
        async with ledger.write() as conn:
            # (outcome, started_at) is indexed: one range scan per finished outcome.
            oldest = (
                sa.select(attempts.c.id)
                .where(attempts.c.outcome.in_(_FINISHED))
                .where(attempts.c.started_at < older_than)
                .limit(batch)
                .scalar_subquery()
            )
            result = await conn.execute(sa.delete(attempts).where(attempts.c.id.in_(oldest)))
            count = int(result.rowcount or 0)
        removed += count
        if count < batch:
            return removed
