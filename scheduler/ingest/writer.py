"""Group commit for webhook events: one transaction for every event that arrived meanwhile.

Each delivery waits for its own result, so Linq still gets 2xx only once the event is
committed, and 503 if the ledger is unavailable. Concurrent deliveries share one
transaction: the fixed costs (BEGIN, COMMIT, the fsync, the single SQLite writer) are paid
once per batch instead of once per event.

On PostgreSQL the writer can write several batches at once (``concurrency``): a batch then
takes every waiting event except those of a chat that a batch being written holds, which wait
for it, so two batches written at once never merge into the same chat (each reads a chat's
columns before writing them) and a chat's events are applied in the order they came. SQLite
has one writer: one batch at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from scheduler import clock
from scheduler.core.event import ApplyResult, Event
from scheduler.core.rule import Policy
from scheduler.errors import LedgerUnavailable
from scheduler.ledger.engine import Ledger
from scheduler.ledger.ingest import record_event, record_events

log = structlog.get_logger("scheduler.ingest")
MAX_BATCH = 256
# Batches written at once on PostgreSQL. One: measured against a PostgreSQL on the same two
# cores, four at once gave the same rate with 16 connections and a fifth less with 64 (smaller
# batches, more CPU per event). A server of its own, further away, may favour more.
POSTGRES_BATCHES = 1
# Event-loop rounds the writer lets pass before it takes a batch: deliveries whose bytes have
# already arrived are parsed and join this batch instead of waiting for the next one. Without
# it a batch often starts with the one event that woke the writer.
GATHER_ROUNDS = 3
# The key of events that name no chat (line statuses, ignored types): one batch at a time.
_NO_CHAT = ""

Pending = tuple[Event, "asyncio.Future[ApplyResult]"]


def _chat_of(event: Event) -> str:
    return event.activity.chat_id if event.activity is not None else _NO_CHAT


class EventWriter:
    """Collects events from concurrent requests and writes them in batches, from one task."""

    def __init__(
        self,
        ledger: Ledger,
        policy: Callable[[], Policy],
        *,
        concurrency: int | None = None,
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        default = 1 if ledger.is_sqlite else POSTGRES_BATCHES
        self.concurrency = max(1, concurrency if concurrency is not None else default)
        self._pending: list[Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writing: set[asyncio.Task[None]] = set()
        # The chats of the batches being written.
        self._held: set[str] = set()

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
            for _ in range(GATHER_ROUNDS):
                await asyncio.sleep(0)
            while self._pending and len(self._writing) < self.concurrency:
                batch = self._take()
                if not batch:
                    break
                chats = {_chat_of(event) for event, _ in batch}
                self._held |= chats
                task = asyncio.create_task(self._write_and_release(batch, chats))
                self._writing.add(task)

    def _take(self) -> list[Pending]:
        """The next batch: waiting events in order, but none of a held chat, and once an
        event of a chat waits, the later ones of that chat wait too."""
        batch: list[Pending] = []
        waiting: list[Pending] = []
        blocked = set(self._held)
        for item in self._pending:
            chat = _chat_of(item[0])
            if chat in blocked or len(batch) >= MAX_BATCH:
                waiting.append(item)
                blocked.add(chat)
            else:
                batch.append(item)
        self._pending = waiting
        return batch

    async def _write_and_release(self, batch: list[Pending], chats: set[str]) -> None:
        try:
            await self._write(batch)
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.set_exception(LedgerUnavailable("shutting down"))
            raise
        finally:
            self._held -= chats
            current = asyncio.current_task()
            if current is not None:
                self._writing.discard(current)
            if self._pending:
                self._wake.set()

    async def _write(self, batch: list[Pending]) -> None:
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
        tasks = [t for t in (self._task, *self._writing) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, future in self._pending:
            if not future.done():
                future.set_exception(LedgerUnavailable("shutting down"))
        self._pending.clear()
