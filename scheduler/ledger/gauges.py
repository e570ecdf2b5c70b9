"""The ledger-derived gauges of ``/metrics``: due chats, chats by status, card active and
ineligible per line, recipients opted out and blocked.

The due count is an index range scan on ``next_share_at`` (cheap after every pass); the
status and line gauges scan the chats and run with the card job, less often.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.models import CardState, ChatStatus
from scheduler.ledger.recipients import recipient_counts
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
        for row in await conn.execute(
            sa.select(lines.c.number, lines.c.card_state, lines.c.ineligible_since)
        ):
            metrics.card_active.labels(line=row.number).set(
                1 if row.card_state == CardState.active else 0
            )
            metrics.line_ineligible.labels(line=row.number).set(
                0 if row.ineligible_since is None else 1
            )
        held = await recipient_counts(conn)
        counts = {status.value: 0 for status in ChatStatus}
        for status, n in await conn.execute(
            sa.select(chats.c.status, sa.func.count()).group_by(chats.c.status)
        ):
            counts[status] = int(n)
    # Every status is set, so one that empties drops to 0 instead of keeping its last value.
    for status, n in counts.items():
        metrics.chats_by_status.labels(status=status).set(n)
    metrics.recipients.labels(state="opted_out").set(held.opted_out)
    metrics.recipients.labels(state="blocked").set(held.blocked)
    await refresh_due(ledger, metrics, now)
