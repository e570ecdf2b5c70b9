"""The ledger-derived gauges of ``/metrics``: due chats, chats by status, card active per line.

The due count is an index range scan on ``next_share_at`` (cheap after every pass); the
status and line gauges scan the chats and run with the card job, less often.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.models import CardState, ChatStatus
from scheduler.metrics import Metrics

__all__ = ["count_due", "refresh_due", "refresh_ledger_gauges"]


async def count_due(ledger: Ledger, now: datetime) -> int:
    """Chats due at ``now`` and not claimed: what the next pass will take."""
    async with ledger.read() as conn:
        return int(
            (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(chats)
                    .where(chats.c.next_share_at <= now)
                    .where(chats.c.claim_attempt_id.is_(None))
                )
            ).scalar_one()
        )


async def refresh_due(ledger: Ledger, metrics: Metrics, now: datetime) -> None:
    metrics.due_chats.set(await count_due(ledger, now))


async def refresh_ledger_gauges(ledger: Ledger, metrics: Metrics, now: datetime) -> None:
    async with ledger.read() as conn:
        for row in await conn.execute(sa.select(lines.c.number, lines.c.card_state)):
            metrics.card_active.labels(line=row.number).set(
                1 if row.card_state == CardState.active else 0
            )
        counts = {status.value: 0 for status in ChatStatus}
        for status, n in await conn.execute(
            sa.select(chats.c.status, sa.func.count()).group_by(chats.c.status)
        ):
            counts[status] = int(n)
    # Every status is set, so one that empties drops to 0 instead of keeping its last value.
    for status, n in counts.items():
        metrics.chats_by_status.labels(status=status).set(n)
    await refresh_due(ledger, metrics, now)
