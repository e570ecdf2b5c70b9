"""Group commit for webhook events: one transaction for every event that arrived meanwhile.

Each delivery waits for its own result, so Linq still gets 2xx only once the event is
committed, and 503 if the ledger is unavailable. Concurrent deliveries share one
transaction: the fixed costs (BEGIN, COMMIT, the fsync, the single SQLite writer) are paid
once per batch instead of once per event.

On PostgreSQL several batches are written at once, each in a lane of its own: a batch spends
most of its time waiting for the server (round trips, the fsync of its COMMIT), and the
server commits concurrent transactions together. Events are given to lanes by chat, so two
batches written at once never merge into the same chat (each reads a chat's columns before
writing them). SQLite has one writer: one lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
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
# Batches written at once on PostgreSQL; each holds a pooled connection while it is written.
POSTGRES_LANES = 4
# Event-loop rounds a lane lets pass before taking its batch: deliveries whose bytes have
# already arrived are parsed and join this batch instead of waiting for the next one. Without
# it a batch often starts with the one event that woke it.
GATHER_ROUNDS = 3


class _Lane:
    """Writes its events in batches, from one task: one batch at a time."""

    def __init__(self, writer: EventWriter, number: int) -> None:
        self.writer = writer
        self.number = number
        self._pending: list[tuple[Event, asyncio.Future[ApplyResult]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, event: Event) -> ApplyResult:
        future: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"event-writer-{self.number}")
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for _ in range(GATHER_ROUNDS):
                await asyncio.sleep(0)
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self.writer._write(batch)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._pending:
            if not future.done():
                future.set_exception(LedgerUnavailable("shutting down"))
        self._pending.clear()


class EventWriter:
    """Collects events from concurrent requests and writes them in batches, lane by lane."""

    def __init__(
        self, ledger: Ledger, policy: Callable[[], Policy], *, lanes: int | None = None
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        count = lanes if lanes is not None else (1 if ledger.is_sqlite else POSTGRES_LANES)
        self._lanes = [_Lane(self, number) for number in range(max(1, count))]

    def _lane_of(self, event: Event) -> _Lane:
        # Events of no chat (line statuses, ignored types) take the first lane.
        if event.activity is None or len(self._lanes) == 1:
            return self._lanes[0]
        key = zlib.crc32(event.activity.chat_id.encode("utf-8"))
        return self._lanes[key % len(self._lanes)]

    async def submit(self, event: Event) -> ApplyResult:
        return await self._lane_of(event).submit(event)

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
        for lane in self._lanes:
            await lane.close()
