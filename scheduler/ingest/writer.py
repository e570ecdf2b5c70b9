"""Group commit for webhook events: one transaction for every event that arrived meanwhile.

Each delivery waits for its own result, so Linq still gets 2xx only once the event is
committed, and 503 if the ledger is unavailable. Concurrent deliveries share one
transaction: the fixed costs (BEGIN, COMMIT, the fsync, the single SQLite writer) are paid
once per batch instead of once per event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from scheduler import clock
from scheduler.core.event import ApplyResult, Event
from scheduler.errors import LedgerUnavailable
from scheduler.ledger.engine import Ledger
from scheduler.ledger.ingest import record_event, record_events
from scheduler.rule import Policy

log = structlog.get_logger("scheduler.ingest")
MAX_BATCH = 256


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
            results = await record_events(self.ledger, events, policy, clock.now())
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
                    result = await record_event(self.ledger, event, policy, clock.now())
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
