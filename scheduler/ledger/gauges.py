"""The ledger-derived gauges of ``/metrics``: due chats, chats by status, per-line states,
recipients opted out and blocked.

The due count is an index range scan on ``next_share_at`` (cheap after every pass); the
status and per-line gauges come from ``ledger stats``' grouped counts (a scan of the chats)
and run with the card job, less often, never on a scrape.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats
from scheduler.ledger.models import CardState, ChatStatus
from scheduler.ledger.stats import ledger_stats
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


async def refresh_ledger_gauges(
    ledger: Ledger, metrics: Metrics, now: datetime, zone: ZoneInfo
) -> None:
    """Per-line and per-status gauges from ``ledger stats``' grouped counts (one read)."""
    stats = await ledger_stats(ledger, now=now, zone=zone)
    for line in stats.lines:
        if line.line is None:
            continue
        metrics.set_line(
            line.line,
            card_active=1 if line.card_state == CardState.active else 0,
            paused=1 if line.paused else 0,
            ineligible=1 if line.ineligible else 0,
            due_now=line.due_now,
            shared_today=line.shared_today,
            chats=line.chats,
        )
    # Every status is set, so one that empties drops to 0 instead of keeping its last value.
    for status in ChatStatus:
        metrics.chats_by_status.labels(status=status.value).set(
            stats.total.by_status.get(status.value, 0)
        )
    metrics.recipients.labels(state="opted_out").set(stats.recipients_opted_out)
    metrics.recipients.labels(state="blocked").set(stats.recipients_blocked)
    metrics.due_chats.set(stats.total.due_now)
