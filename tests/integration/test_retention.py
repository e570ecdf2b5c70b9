"""Finished share attempts past their retention are deleted; open ones never are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from scheduler.core.status import Outcome
from scheduler.ledger.claims import attempts
from scheduler.ledger.engine import Ledger
from scheduler.ledger.retention import prune_attempts
from tests.factories import add_chats, add_line

LINE = "+14155550100"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


async def _attempts(ledger: Ledger, rows: list[tuple[str, datetime, Outcome]]) -> None:
    async with ledger.write() as conn:
        await conn.execute(
            sa.insert(attempts),
            [
                {
                    "chat_id": chat_id,
                    "line": LINE,
                    "started_at": started,
                    "finished_at": None if outcome == Outcome.started else started,
                    "outcome": outcome,
                    "instance": "test",
                    "tries": 1,
                }
                for chat_id, started, outcome in rows
            ],
        )


async def _left(ledger: Ledger) -> list[tuple[str, str]]:
    async with ledger.read() as conn:
        rows = await conn.execute(
            sa.select(attempts.c.chat_id, attempts.c.outcome).order_by(attempts.c.chat_id)
        )
        return [(r.chat_id, r.outcome) for r in rows]


async def test_prunes_finished_attempts_past_the_cutoff_only(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOW)
    ids = await add_chats(ledger, LINE, 6, now=NOW, first_outbound_at=NOW - timedelta(days=400))
    old, recent = NOW - timedelta(days=200), NOW - timedelta(days=10)
    await _attempts(
        ledger,
        [
            (ids[0], old, Outcome.shared),
            (ids[1], old, Outcome.failed),
            (ids[2], old, Outcome.ambiguous),
            # Open: the claim protocol may still resolve it, whatever its age.
            (ids[3], old, Outcome.started),
            (ids[4], recent, Outcome.shared),
            (ids[5], recent, Outcome.rate_limited),
        ],
    )
    removed = await prune_attempts(ledger, NOW - timedelta(days=180))
    assert removed == 3
    assert await _left(ledger) == [
        (ids[3], "started"),
        (ids[4], "shared"),
        (ids[5], "rate_limited"),
    ]
    assert await prune_attempts(ledger, NOW - timedelta(days=180)) == 0


async def test_prunes_in_batches_until_done(ledger: Ledger) -> None:
    await add_line(ledger, LINE, NOW)
    ids = await add_chats(ledger, LINE, 25, now=NOW, first_outbound_at=NOW - timedelta(days=400))
    await _attempts(
        ledger,
        [
            (chat_id, NOW - timedelta(days=300 - day), Outcome.shared)
            for chat_id in ids
            for day in range(4)
        ],
    )
    assert await prune_attempts(ledger, NOW - timedelta(days=180), batch=7) == 100
    assert await _left(ledger) == []
