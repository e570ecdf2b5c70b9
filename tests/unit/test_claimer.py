"""The pass's claimer: a claim only for a worker about to call, asks batched per transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from scheduler.ledger.claims import Claim
from scheduler.share.share_pass import _Claimer

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _claims(start: int, n: int) -> list[Claim]:
    return [Claim(f"chat-{i}", "+14155550100", i, NOW, 0) for i in range(start, start + n)]


class FakeLedger:
    """Hands out ``due`` claims; each take waits until released, to hold asks back."""

    def __init__(self, due: int) -> None:
        self.due = due
        self.given = 0
        self.asked: list[int] = []
        self.gate = asyncio.Event()

    async def take(self, wanted: int) -> list[Claim] | None:
        self.asked.append(wanted)
        await self.gate.wait()
        if self.given >= self.due:
            return None
        n = min(wanted, self.due - self.given)
        out = _claims(self.given, n)
        self.given += n
        return out


async def test_asks_made_during_a_take_are_served_together_by_the_next() -> None:
    ledger = FakeLedger(due=10)
    claimer = _Claimer(ledger.take)
    first = asyncio.create_task(claimer.next())
    await asyncio.sleep(0)
    more = [asyncio.create_task(claimer.next()) for _ in range(3)]
    await asyncio.sleep(0)
    ledger.gate.set()
    got = await asyncio.gather(first, *more)
    assert ledger.asked == [1, 3]
    assert len({c.chat_id for c in got if c is not None}) == 4
    assert await claimer.close() == []


async def test_never_more_claims_than_asks_and_none_once_nothing_is_due() -> None:
    ledger = FakeLedger(due=2)
    ledger.gate.set()
    claimer = _Claimer(ledger.take)
    got = await asyncio.gather(*(claimer.next() for _ in range(4)))
    assert sorted(c.chat_id for c in got if c is not None) == ["chat-0", "chat-1"]
    assert got.count(None) == 2
    assert ledger.asked[0] == 4 and all(n <= 2 for n in ledger.asked[1:])
    assert await claimer.next() is None


async def test_a_claim_whose_worker_was_cancelled_is_given_back_for_release() -> None:
    ledger = FakeLedger(due=5)
    claimer = _Claimer(ledger.take)
    asker = asyncio.create_task(claimer.next())
    while not ledger.asked:  # the claim transaction is under way
        await asyncio.sleep(0)
    asker.cancel()
    ledger.gate.set()
    left = await claimer.close()
    assert [c.chat_id for c in left] == ["chat-0"]
