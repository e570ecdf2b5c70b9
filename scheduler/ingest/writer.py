"""Group commit for webhook events: one transaction for every event that arrived meanwhile.

Each delivery waits for its own result, so Linq still gets 2xx only once the event is
committed, and 503 if the ledger is unavailable. Concurrent deliveries share one
transaction: the fixed costs (BEGIN, COMMIT, the fsync, the single SQLite writer) are paid
once per batch instead of once per event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler import clock
from scheduler.core.activity import ChatActivity, LineStatus
from scheduler.core.rule import Policy
from scheduler.errors import LedgerUnavailable
from scheduler.ingest.apply import (
    ApplyResult,
    apply_event,
    apply_line_status,
    merge_all,
    upsert_chats,
    webhook_events,
)
from scheduler.ingest.events import Event
from scheduler.ledger.driver import codec, driver_of
from scheduler.ledger.engine import Ledger

log = structlog.get_logger("scheduler.ingest")
MAX_BATCH = 256
_EVENT_COLUMNS = ["event_id", "event_type", "received_at"]
# Event ids per INSERT: three parameters each, far below the databases' limits.
_ID_ROWS = 500


async def _record_ids(conn: AsyncConnection, events: Sequence[Event], now: datetime) -> set[str]:
    """Insert the events' ids; the ids this transaction inserted (the others are known).

    One ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per batch: a replica recording the
    same id at the same moment makes ours conflict, so an event is applied once.
    """
    db = await driver_of(conn)
    table = codec(webhook_events, db.dialect)
    bind = table.binder(_EVENT_COLUMNS)
    unique = {e.event_id: e for e in reversed(events)}
    fresh: set[str] = set()
    ids = list(unique)
    for start in range(0, len(ids), _ID_ROWS):
        part = ids[start : start + _ID_ROWS]
        sql = (
            f"INSERT INTO {table.name} ({table.columns(_EVENT_COLUMNS)}) "
            f"VALUES {db.rows_of(len(_EVENT_COLUMNS), len(part))} "
            f"ON CONFLICT DO NOTHING RETURNING {table.q['event_id']}"
        )
        params = [v for i in part for v in bind([i, unique[i].event_type, now])]
        fresh.update(row[0] for row in await db.fetch(sql, params))
    return fresh


async def apply_events(
    ledger: Ledger, events: Sequence[Event], policy: Policy, now: datetime
) -> list[ApplyResult]:
    """Record many events and their effects in one transaction, in arrival order.

    A repeated event id (already in the ledger, or earlier in the batch) changes nothing.
    """
    results: list[ApplyResult] = []
    async with ledger.write() as conn:
        fresh = await _record_ids(conn, events, now)
        by_chat: dict[str, list[ChatActivity]] = {}
        statuses: list[LineStatus] = []
        for event in events:
            if event.event_id not in fresh:
                results.append("duplicate")
                continue
            fresh.discard(event.event_id)
            if event.line_status is not None:
                statuses.append(event.line_status)
                results.append("applied")
                continue
            if event.activity is None:
                results.append("ignored")
                continue
            by_chat.setdefault(event.activity.chat_id, []).append(event.activity)
            results.append("applied")
        if by_chat:
            await upsert_chats(
                conn, {chat: merge_all(acts) for chat, acts in by_chat.items()}, policy, now
            )
        # Each status is ordered by its own time, so applying them in any order is the same.
        for status in sorted(statuses, key=lambda s: s.changed_at):
            await apply_line_status(conn, status, now)
    return results


class EventWriter:
    """Collects events from concurrent requests and writes them in batches, from one task."""

    def __init__(self, ledger: Ledger, policy: Callable[[], Policy]) -> None:
        self.ledger = ledger
        self.policy = policy
        self._pending: list[tuple[Event, asyncio.Future[ApplyResult]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, event: Event) -> ApplyResult:
        future: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="event-writer")
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._write(batch)

    async def _write(self, batch: list[tuple[Event, asyncio.Future[ApplyResult]]]) -> None:
        events = [event for event, _ in batch]
        policy = self.policy()
        try:
            results = await apply_events(self.ledger, events, policy, clock.now())
        except LedgerUnavailable as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception:
            # One bad event must not fail the others: apply them one by one.
            log.warning("webhook.batch_failed", events=len(batch), exc_info=True)
            for event, future in batch:
                try:
                    result = await apply_event(self.ledger, event, policy, clock.now())
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(result)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._pending:
            if not future.done():
                future.set_exception(LedgerUnavailable("shutting down"))
        self._pending.clear()
