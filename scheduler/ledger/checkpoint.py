"""SQLite: the write-ahead log copied back into the database file off the writers' path.

By default SQLite checkpoints inside whichever COMMIT pushes the log past 1,000 pages, so that
one transaction pays for everybody's writes, an fsync included: now and then a claim of 500
chats or a batch of webhook events took two to five times its usual time. The daemon opens
the ledger with automatic checkpoints off and runs this task instead. PASSIVE checkpoints
never wait for, nor block, readers or the writer; what a reader still needs is copied by a
later round. SQLite also checkpoints when the last connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import structlog

from scheduler.errors import LedgerUnavailable
from scheduler.ledger.engine import Ledger

log = structlog.get_logger("scheduler.ledger")

# A log this long after a round means checkpoints cannot keep up (a reader that never ends?).
LONG_LOG_FRAMES = 50_000


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    busy: bool
    log_frames: int
    checkpointed_frames: int


async def checkpoint(ledger: Ledger) -> CheckpointResult:
    """One PASSIVE checkpoint on a connection of its own."""
    async with ledger.read() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        # Straight to the driver: a checkpoint cannot run inside the transaction SQLAlchemy
        # would open around the statement.
        cursor = await driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
        row = await cursor.fetchone()
        await cursor.close()
    busy, log_frames, done = row if row is not None else (0, 0, 0)
    return CheckpointResult(bool(busy), int(log_frames), int(done))


class Checkpointer:
    """Checkpoints the ledger every ``interval`` seconds until stopped."""

    def __init__(self, ledger: Ledger, interval: float = 1.0) -> None:
        self.ledger = ledger
        self.interval = interval
        self.rounds = 0
        self._warned = False

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
            try:
                result = await checkpoint(self.ledger)
            except LedgerUnavailable as exc:
                log.warning("ledger.checkpoint_failed", error=str(exc))
                continue
            except Exception as exc:  # a failed round must not end the task; the next retries
                log.warning("ledger.checkpoint_failed", error=repr(exc))
                continue
            self.rounds += 1
            behind = result.log_frames - result.checkpointed_frames
            if behind > LONG_LOG_FRAMES and not self._warned:
                self._warned = True
                log.warning("ledger.checkpoint_behind", frames=behind)
