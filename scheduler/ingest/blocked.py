"""Reading our account's blocked list (``GET /v3/blocked_handles``) into the ledger.

A recipient answered 2026 stays blocked (its chats not tried, none losing its day) until a
read of the list no longer has it. The daemon reads the list at start and daily.
"""

from __future__ import annotations

import structlog

from scheduler import clock
from scheduler.core.rule import Policy
from scheduler.ledger.engine import Ledger
from scheduler.ledger.recipients import BlockedSync, sync_blocked_handles
from scheduler.linq.client import LinqClient

log = structlog.get_logger("scheduler.ingest")


async def refresh_blocked_handles(
    ledger: Ledger, client: LinqClient, policy: Policy
) -> BlockedSync:
    """Read the blocked list and make the ledger match it. Raises LinqError on a failed read."""
    started = clock.now()
    entries = await client.get_blocked_handles()
    result = await sync_blocked_handles(
        ledger,
        {entry.handle: entry.blocked_at for entry in entries},
        read_started_at=started,
        policy=policy,
        now=clock.now(),
    )
    log.info(
        "blocked_handles.synced",
        listed=len(entries),
        blocked=result.blocked,
        unblocked=result.unblocked,
    )
    return result
