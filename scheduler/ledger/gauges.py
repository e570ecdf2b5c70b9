"""The ledger-derived numbers of ``/metrics``: due chats, chats by status, per-line states,
recipients opted out and blocked. The caller sets the gauges (:mod:`scheduler.http.gauges`).

The due count is an index range scan on ``next_share_at`` (cheap after every pass); the
status and per-line numbers come from ``ledger stats``' grouped counts, without what only its
whole report shows (one scan of the chats instead of four), and are read with the card job,
less often, never on a scrape.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from scheduler.core.gauges import LedgerGauges, LineGauges
from scheduler.core.status import CardState, ChatStatus
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats
from scheduler.ledger.stats import ledger_stats

__all__ = ["count_due", "read_ledger_gauges"]


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


async def read_ledger_gauges(ledger: Ledger, now: datetime, zone: ZoneInfo) -> LedgerGauges:
    """Per-line and per-status numbers from ``ledger stats``' grouped counts (one read)."""
    stats = await ledger_stats(ledger, now=now, zone=zone, whole=False)
    return LedgerGauges(
        lines=tuple(
            LineGauges(
                line=line.line,
                card_active=line.card_state == CardState.active,
                paused=bool(line.paused),
                ineligible=bool(line.ineligible),
                due_now=line.due_now,
                shared_today=line.shared_today,
                chats=line.chats,
            )
            for line in stats.lines
            if line.line is not None
        ),
        chats_by_status={
            status: stats.total.by_status.get(status.value, 0) for status in ChatStatus
        },
        recipients_opted_out=stats.recipients_opted_out,
        recipients_blocked=stats.recipients_blocked,
        due_now=stats.total.due_now,
    )
