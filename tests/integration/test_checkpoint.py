"""SQLite's background checkpoints: commits leave the log alone, the Checkpointer copies it."""

from __future__ import annotations

import asyncio

from scheduler import clock
from scheduler.ledger.checkpoint import Checkpointer, checkpoint
from scheduler.ledger.engine import Ledger, create_engine
from tests.factories import add_chats


async def _fill(ledger: Ledger) -> None:
    now = clock.now()
    await add_chats(ledger, "+14155550100", 3000, now=now, first_outbound_at=now)


async def _write_rounds(ledger: Ledger, rounds: int) -> None:
    for _ in range(rounds):
        async with ledger.write() as conn:
            await conn.exec_driver_sql("UPDATE chats SET share_count = share_count + 1")


async def test_commits_do_not_checkpoint_when_a_background_task_does(sqlite_url: str) -> None:
    setup = Ledger(create_engine(sqlite_url))
    await _fill(setup)
    await setup.dispose()
    ledger = Ledger(create_engine(sqlite_url, background_checkpoint=True))
    try:
        await checkpoint(ledger)
        await _write_rounds(ledger, 12)
        # Past SQLite's automatic threshold (1,000 pages) and nothing copied back by a commit:
        # the checkpoint finds every frame still to copy, and copies them all.
        result = await checkpoint(ledger)
        assert result.log_frames > 1000
        assert result.checkpointed_frames == result.log_frames
        assert not result.busy
    finally:
        await ledger.dispose()


async def test_default_engine_checkpoints_inside_commits(sqlite_url: str) -> None:
    setup = Ledger(create_engine(sqlite_url))
    await _fill(setup)
    await checkpoint(setup)
    await _write_rounds(setup, 12)
    try:
        # Automatic checkpoints kept restarting the log: it never grew past ~1,000 pages plus
        # one transaction's worth.
        result = await checkpoint(setup)
        assert result.log_frames < 12 * 250
    finally:
        await setup.dispose()


async def test_checkpointer_runs_until_stopped(sqlite_url: str) -> None:
    ledger = Ledger(create_engine(sqlite_url, background_checkpoint=True))
    stopping = asyncio.Event()
    checkpointer = Checkpointer(ledger, interval=0.05)
    task = asyncio.create_task(checkpointer.run(stopping))
    try:
        await _write_rounds(ledger, 3)
        while checkpointer.rounds < 3:
            await asyncio.sleep(0.02)
        stopping.set()
        await asyncio.wait_for(task, 5)
    finally:
        await ledger.dispose()
    assert checkpointer.rounds >= 3
    assert task.done() and task.exception() is None
