"""The pass's claimer: claims for the workers about to call, asks batched per transaction, and
claims ahead only as many as the workers asked for while a transaction ran."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from scheduler.core.chat import CallRecord
from scheduler.core.share_outcome import Decision
from scheduler.core.status import Outcome
from scheduler.ledger.claims import Claim
from scheduler.share.share_pass import _Claimer, _Recorder

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


async def _ask_during_take(claimer: _Claimer, ledger: FakeLedger, asks: int) -> list[Claim | None]:
    """One ask whose take is held open while ``asks`` more arrive; then all are served."""
    first = asyncio.create_task(claimer.next())
    while not ledger.asked:
        await asyncio.sleep(0)
    more = [asyncio.create_task(claimer.next()) for _ in range(asks)]
    await asyncio.sleep(0)
    ledger.gate.set()
    return list(await asyncio.gather(first, *more))


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_nothing_is_claimed_ahead_before_a_workers_cycle_is_known() -> None:
    ledger = FakeLedger(due=100)
    claimer = _Claimer(ledger.take, ahead=8)
    await _ask_during_take(claimer, ledger, asks=3)
    await _settle()
    assert ledger.asked == [1, 3]
    assert claimer.spare == []
    await claimer.close()


async def test_calls_faster_than_claims_keep_two_transactions_of_asks_claimed_ahead() -> None:
    # At zero latency a worker's cycle (15 ms) is shorter than two claim transactions: each
    # claim handed out tops up the claims ahead to what the workers ask for in two
    # transactions (here more than the cap of 2), so the next claim is taken while the worker
    # calls.
    ledger = FakeLedger(due=100)
    ledger.gate.set()
    loop = asyncio.get_running_loop()
    claimer = _Claimer(ledger.take, workers=1, ahead=2)
    claimer.cycle, claimer.transaction = 0.015, 0.05
    first = await claimer.next()
    got_at = loop.time()
    await _settle()
    assert first is not None
    assert ledger.asked == [1, 2]
    assert len(claimer.spare) == 2
    second = await claimer.next(got_at)
    assert second is not None  # from the spare: no transaction waited for
    await _settle()
    assert ledger.asked == [1, 2, 1]  # topped up again
    left = await claimer.close()
    assert len(left) == ledger.given - 2


async def test_a_lead_comes_one_transaction_or_two_before_the_worker_asks() -> None:
    # A worker paced by the rate limit or by slow calls: its lead waits for most of its cycle.
    ledger = FakeLedger(due=100)
    ledger.gate.set()
    claimer = _Claimer(ledger.take, ahead=8)
    claimer.cycle, claimer.transaction = 0.2, 0.05
    assert await claimer.next() is not None
    await asyncio.sleep(0.05)
    assert ledger.asked == [1] and claimer.spare == []  # the lead is not due yet
    await asyncio.sleep(0.1)  # cycle - 2 transactions = 0.1 s after the claim
    await _settle()
    assert ledger.asked == [1, 1] and len(claimer.spare) == 1
    await claimer.close()


async def test_claims_ahead_never_exceed_the_cap() -> None:
    ledger = FakeLedger(due=100)
    ledger.gate.set()
    claimer = _Claimer(ledger.take, workers=6, ahead=2)
    claimer.cycle, claimer.transaction = 0.0, 0.01
    # Six workers served at once: each sets a lead, but only two claims are taken ahead.
    got = await asyncio.gather(*(claimer.next() for _ in range(6)))
    await _settle()
    assert all(c is not None for c in got)
    assert len(claimer.spare) == 2
    assert ledger.given == 6 + 2
    await claimer.close()


async def test_a_closed_claimer_cancels_the_leads_still_to_come() -> None:
    ledger = FakeLedger(due=100)
    ledger.gate.set()
    claimer = _Claimer(ledger.take, ahead=8)
    claimer.cycle = 0.05
    assert await claimer.next() is not None
    assert await claimer.close() == []
    await asyncio.sleep(0.08)
    assert ledger.asked == [1]


async def test_asks_left_when_nothing_more_is_due_get_the_claims_taken_ahead() -> None:
    ledger = FakeLedger(due=3)
    claimer = _Claimer(ledger.take, ahead=8)
    claimer.leads = 4  # four claims wanted ahead by the next transaction
    got = await _ask_during_take(claimer, ledger, asks=2)
    # The first take claimed all three (one asked, the rest ahead); the two asks made during
    # it find nothing more due in the next take, and are served from what was claimed ahead.
    assert ledger.asked[0] == 1 + 4
    assert sorted(c.chat_id for c in got if c is not None) == ["chat-0", "chat-1", "chat-2"]
    assert await claimer.close() == []


class HeldWriter:
    """A writer whose writes wait until released, recording what they wrote."""

    def __init__(self) -> None:
        self.written: list[list[str]] = []
        self.gate = asyncio.Event()

    async def write(self, batch: list[CallRecord]) -> list[CallRecord]:
        await self.gate.wait()
        self.written.append([r.claim.chat_id for r in batch])
        return []


def _record(claim: Claim) -> CallRecord:
    return CallRecord(claim, Decision(Outcome.shared, counts_as_shared=True), NOW, 1)


async def test_records_a_claim_takes_during_a_flush_are_neither_lost_nor_written_twice() -> None:
    writer = HeldWriter()
    recorder = _Recorder(writer)  # type: ignore[arg-type]
    first, second, third = (_record(c) for c in _claims(0, 3))
    recorder.add(first)
    flushing = asyncio.create_task(recorder.flush())
    await asyncio.sleep(0)  # the flush is writing ``first``
    recorder.add(second)
    assert [r.claim.chat_id for r in recorder.take()] == ["chat-1"]  # a claim carries it
    recorder.add(third)
    writer.gate.set()
    await flushing
    # ``third`` arrived during the flush's write: the flush writes it next, and nothing else.
    assert writer.written == [["chat-0"], ["chat-2"]]
    assert recorder.pending == []


def test_leads_due_within_a_millisecond_work_on_uvloop() -> None:
    """uvloop turns a timer due within a millisecond into a plain handle (no ``when()``): the
    daemon runs on uvloop, so the leads must not depend on timer handles."""
    import uvloop

    async def serve_three() -> list[Claim | None]:
        ledger = FakeLedger(due=100)
        ledger.gate.set()
        claimer = _Claimer(ledger.take, workers=2, ahead=4)
        claimer.cycle, claimer.transaction = 0.0104, 0.005  # a lead 0.4 ms after each claim
        got = [await claimer.next() for _ in range(3)]
        await asyncio.sleep(0.01)
        await claimer.close()
        return got

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        got = runner.run(serve_three())
    assert all(c is not None for c in got)
