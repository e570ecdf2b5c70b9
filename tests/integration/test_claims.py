"""The claim protocol on real SQLite and PostgreSQL ledgers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from scheduler.core.share_outcome import decide
from scheduler.core.status import CardState, Outcome
from scheduler.errors import CardNotActive, ServerError
from scheduler.ledger.claim_sql import ClaimSQL
from scheduler.ledger.claims import (
    CallRecord,
    attempts,
    claim_batch,
    record_and_claim,
    record_results,
    release_claims,
)
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.gauges import count_due
from scheduler.ledger.recompute import recompute_chats
from tests.factories import add_chats, add_line, chat_row, policy

LINE = "+14155550100"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _decide(error: Exception | None, now: datetime) -> object:
    return decide(
        error,  # type: ignore[arg-type]
        now=now,
        maybe_applied=False,
        consecutive_failures=0,
        failure_backoff=timedelta(minutes=5),
    )


async def _seed(ledger: Ledger, count: int = 10) -> list[str]:
    pol = policy()
    await add_line(ledger, LINE, NOON)
    return await add_chats(
        ledger, LINE, count, now=NOON, first_outbound_at=NOON - timedelta(hours=1), pol=pol
    )


async def test_claims_are_exclusive_and_recorded(ledger: Ledger) -> None:
    pol = policy()
    ids = await _seed(ledger)
    first = await claim_batch(ledger, now=NOON, limit=6, instance="a", lease=LEASE, policy=pol)
    second = await claim_batch(ledger, now=NOON, limit=100, instance="b", lease=LEASE, policy=pol)
    assert len(first.claims) == 6
    assert len(second.claims) == 4
    assert {c.chat_id for c in first.claims}.isdisjoint(c.chat_id for c in second.claims)
    assert {c.chat_id for c in first.claims + second.claims} == set(ids)
    # The intent is committed before any call: the chats' claim columns, each with its own
    # reserved attempt id; no attempt row is written until the outcome.
    async with ledger.read() as conn:
        intents = (
            await conn.execute(
                sa.select(
                    chats.c.chat_id,
                    chats.c.claimed_by,
                    chats.c.claim_attempt_id,
                    chats.c.claim_started_at,
                    chats.c.claim_forced,
                ).where(chats.c.claim_attempt_id.is_not(None))
            )
        ).all()
        rows_before = (await conn.execute(sa.select(sa.func.count(attempts.c.id)))).scalar_one()
    assert len(intents) == 10
    assert {i.claim_started_at for i in intents} == {NOON}
    assert {i.claim_forced for i in intents} == {False}
    claim_of = {c.chat_id: c for c in first.claims + second.claims}
    assert {i.chat_id: (i.claimed_by, i.claim_attempt_id) for i in intents} == {
        c.chat_id: ("a" if c in first.claims else "b", c.attempt_id) for c in claim_of.values()
    }
    assert len({i.claim_attempt_id for i in intents}) == 10
    assert rows_before == 0
    done = NOON + timedelta(seconds=1)
    records = [
        CallRecord(c, _decide(None, done), done, tries=1)  # type: ignore[arg-type]
        for c in first.claims + second.claims
    ]
    lost = await record_results(ledger, records, pol, done)
    # After the results: exactly one attempt row per share, under its claim's id.
    async with ledger.read() as conn:
        written = (
            await conn.execute(
                sa.select(
                    attempts.c.id,
                    attempts.c.chat_id,
                    attempts.c.started_at,
                    attempts.c.finished_at,
                    attempts.c.outcome,
                    attempts.c.instance,
                    attempts.c.forced,
                )
            )
        ).all()
    assert sorted((a.chat_id, a.id) for a in written) == sorted(
        (c.chat_id, c.attempt_id) for c in claim_of.values()
    )
    assert {(a.started_at, a.finished_at, a.outcome, a.forced) for a in written} == {
        (NOON, done, Outcome.shared, False)
    }
    assert sorted(a.instance for a in written) == ["a"] * 6 + ["b"] * 4
    assert lost == []
    row = await chat_row(ledger, ids[0])
    assert row.share_count == 1
    assert row.last_shared_at == done
    assert row.claim_attempt_id is None
    # Next share: the next day's window opening, 09:00 UTC.
    assert row.next_share_at == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    again = await claim_batch(ledger, now=done, limit=100, instance="a", lease=LEASE, policy=pol)
    assert again.claims == []


async def test_outcomes_ride_with_the_next_claims_in_one_transaction(ledger: Ledger) -> None:
    """A busy pass writes the outcomes of its finished calls in the transaction that claims its
    next chats: the same rows as the two apart, and a claim's attempt id still reserved."""
    pol = policy()
    ids = await _seed(ledger)
    first = await claim_batch(ledger, now=NOON, limit=4, instance="a", lease=LEASE, policy=pol)
    done = NOON + timedelta(seconds=1)
    records = [
        CallRecord(c, _decide(None, done), done, tries=1)  # type: ignore[arg-type]
        for c in first.claims
    ]
    lost, second = await record_and_claim(
        ledger, records, now=done, limit=4, instance="a", lease=LEASE, policy=pol
    )
    assert lost == []
    assert len(second.claims) == 4
    recorded = {c.chat_id for c in first.claims}
    assert recorded.isdisjoint(c.chat_id for c in second.claims)
    for chat_id in recorded:
        row = await chat_row(ledger, chat_id)
        assert (row.share_count, row.last_shared_at, row.claim_attempt_id) == (1, done, None)
        assert row.next_share_at == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    async with ledger.read() as conn:
        written = (await conn.execute(sa.select(attempts.c.id, attempts.c.outcome))).all()
    assert sorted(written) == sorted((c.attempt_id, Outcome.shared) for c in first.claims)
    # The new claims' ids come after the first batch's and are all distinct.
    new_ids = [c.attempt_id for c in second.claims]
    assert len(set(new_ids)) == 4
    assert min(new_ids) > max(c.attempt_id for c in first.claims)
    for claim in second.claims:
        row = await chat_row(ledger, claim.chat_id)
        assert (row.claimed_by, row.claim_attempt_id) == ("a", claim.attempt_id)
    # Nothing to record and nothing left but two chats: the rest is claimed.
    lost, third = await record_and_claim(
        ledger, [], now=done, limit=10, instance="a", lease=LEASE, policy=pol
    )
    assert (lost, len(third.claims)) == ([], 2)
    assert set(ids) == recorded | {c.chat_id for c in second.claims + third.claims}


async def test_expired_claim_counts_as_shared(ledger: Ledger) -> None:
    pol = policy()
    ids = await _seed(ledger, 3)
    claimed = await claim_batch(
        ledger, now=NOON, limit=10, instance="dead", lease=LEASE, policy=pol
    )
    assert len(claimed.claims) == 3
    # The owner dies; before the lease ends nobody may touch the chats.
    early = NOON + LEASE - timedelta(seconds=1)
    assert (
        await claim_batch(ledger, now=early, limit=10, instance="b", lease=LEASE, policy=pol)
    ).claims == []
    later = NOON + LEASE + timedelta(seconds=1)
    # The next claim reads the expired claims with the due chats and resolves them.
    found = await claim_batch(ledger, now=later, limit=10, instance="b", lease=LEASE, policy=pol)
    assert (found.ambiguous, found.claims) == (3, [])
    row = await chat_row(ledger, ids[0])
    assert row.share_count == 1
    assert row.last_shared_at == NOON
    assert row.claim_attempt_id is None
    assert (
        await claim_batch(ledger, now=later, limit=10, instance="b", lease=LEASE, policy=pol)
    ).claims == []
    async with ledger.read() as conn:
        outcomes = (await conn.execute(sa.select(attempts.c.outcome))).scalars().all()
    assert sorted(outcomes) == [Outcome.ambiguous] * 3


async def test_expired_claim_found_by_claim_batch_is_not_shared_again(ledger: Ledger) -> None:
    """The claim reads the expired claims in the due range with the due chats: it claims the
    latter and leaves the former as they are, resolved from their own claim columns."""
    pol = policy()
    ids = await _seed(ledger, 4)
    dead = await claim_batch(ledger, now=NOON, limit=2, instance="dead", lease=LEASE, policy=pol)
    later = NOON + LEASE + timedelta(seconds=1)
    result = await claim_batch(ledger, now=later, limit=10, instance="b", lease=LEASE, policy=pol)
    assert sorted(c.chat_id for c in result.claims) == sorted(
        set(ids) - {c.chat_id for c in dead.claims}
    )
    assert result.ambiguous == 2
    for claim in dead.claims:
        assert (await chat_row(ledger, claim.chat_id)).share_count == 1
    async with ledger.read() as conn:
        written = (
            await conn.execute(sa.select(attempts.c.id, attempts.c.instance, attempts.c.started_at))
        ).all()
    assert sorted(written) == sorted((c.attempt_id, "dead", NOON) for c in dead.claims)


@pytest.mark.parametrize("next_share_at", ["later", "never"])
async def test_a_chat_claimed_by_name_whose_owner_died_is_found_by_the_next_claim(
    ledger: Ledger, next_share_at: str
) -> None:
    """``share now --force`` claims a chat that is not due (due tomorrow, or never under its
    facts); its owner dies mid-call. The claim was brought into the due range: the next
    claim of due chats finds it expired and resolves it as shared, and nothing scans the
    whole table for expired claims."""
    pol = policy()
    ids = await _seed(ledger, 2)
    due_at = None if next_share_at == "never" else NOON + timedelta(days=1)
    async with ledger.write() as conn:
        await conn.execute(
            sa.update(chats).where(chats.c.chat_id == ids[0]).values(next_share_at=due_at)
        )
    forced = await claim_batch(
        ledger,
        now=NOON,
        limit=1,
        instance="cli",
        lease=LEASE,
        policy=pol,
        chat_ids=[ids[0]],
        force=True,
    )
    assert [c.chat_id for c in forced.claims] == [ids[0]]
    assert (await chat_row(ledger, ids[0])).next_share_at == NOON
    later = NOON + LEASE + timedelta(seconds=1)
    found = await claim_batch(ledger, now=later, limit=10, instance="d", lease=LEASE, policy=pol)
    assert found.ambiguous == 1
    assert [c.chat_id for c in found.claims] == [ids[1]]
    row = await chat_row(ledger, ids[0])
    assert row.claim_attempt_id is None
    assert (row.share_count, row.last_shared_at) == (1, NOON)
    async with ledger.read() as conn:
        outcome = (
            await conn.execute(
                sa.select(attempts.c.outcome, attempts.c.forced).where(
                    attempts.c.id == forced.claims[0].attempt_id
                )
            )
        ).one()
    assert tuple(outcome) == (Outcome.ambiguous, True)


async def test_a_claimed_chat_keeps_its_next_share_at_and_the_due_query_skips_it(
    ledger: Ledger,
) -> None:
    """The claim writes only the claim columns: a chat in flight stays in the due range
    (``next_share_at`` as it was), and the due query leaves it out by its live claim, so
    a pass still finds the due chats behind it, until the lease runs out."""
    pol = policy()
    ids = await _seed(ledger, 4)
    due_at = {chat_id: (await chat_row(ledger, chat_id)).next_share_at for chat_id in ids}
    first = await claim_batch(ledger, now=NOON, limit=2, instance="a", lease=LEASE, policy=pol)
    assert len(first.claims) == 2
    for claim in first.claims:
        row = await chat_row(ledger, claim.chat_id)
        assert row.claim_attempt_id == claim.attempt_id
        assert row.next_share_at == due_at[claim.chat_id] <= NOON
    assert await count_due(ledger, NOON) == 2
    # Only the chats behind the live claims come back, though the claimed ones sort first.
    soon = NOON + timedelta(minutes=2)
    second = await claim_batch(ledger, now=soon, limit=2, instance="b", lease=LEASE, policy=pol)
    assert {c.chat_id for c in second.claims} == set(ids) - {c.chat_id for c in first.claims}
    assert await count_due(ledger, soon) == 0
    # The lease of the first claims runs out (their owner died), the second's still runs: the
    # due query finds only the first, resolved as shared, not claimed again.
    later = NOON + LEASE + timedelta(seconds=1)
    third = await claim_batch(ledger, now=later, limit=10, instance="c", lease=LEASE, policy=pol)
    assert third.claims == []
    assert third.ambiguous == 2


async def test_the_claim_is_a_hot_update_on_postgresql(pg_url: str) -> None:
    """The claim changes no indexed column of the chats, so PostgreSQL writes each claimed
    row's new version in its page with no new index entries (a HOT update)."""
    ledger = Ledger(create_engine(pg_url, pool_size=1))
    try:
        await _claim_six_as_hot_updates(ledger)
    finally:
        await ledger.dispose()


async def _claim_six_as_hot_updates(ledger: Ledger) -> None:
    ids = await _seed(ledger, 6)
    # This backend's counts, read in the claim's transaction: no wait for the statistics to
    # be flushed (they may include its earlier transactions' writes, hence the difference).
    counts = sa.text(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'chats'"
    )
    async with ledger.write() as conn:
        sql = await ClaimSQL.open(conn)
        updated_before, hot_before = (await conn.execute(counts)).one()
        # The pass's claim (the due chats, read and claimed in one statement) ...
        claim_due = sql.dialect.claim_due(NOON, 3, instance="a", lease_end=NOON + LEASE)
        taken = sql.taken((await sql.run([claim_due]))[-1])
        # ... and the claim of named chats (``share now``).
        rest = [row for row in await sql.chats(ids) if row.claim_attempt_id is None]
        named = await sql.claim(rest, now=NOON, instance="a", lease_end=NOON + LEASE, forced=False)
        updated, hot = (await conn.execute(counts)).one()
    assert len(taken) == len(named) == 3
    assert all(attempt_id is not None for _, attempt_id in taken)
    assert (updated - updated_before, hot - hot_before) == (6, 6)


async def test_postgresql_reads_and_claims_the_due_chats_in_one_statement(pg_url: str) -> None:
    """The pass's claim on PostgreSQL is one statement, in one round trip: the facts it returns
    are the chats' as read, before the claim, with the attempt id each got."""
    ledger = Ledger(create_engine(pg_url, pool_size=1))
    try:
        ids = await _seed(ledger, 3)
        async with ledger.write() as conn:
            sql = await ClaimSQL.open(conn)
            assert sql.dialect.claims_as_it_reads
            statement = sql.dialect.claim_due(NOON, 10, instance="a", lease_end=NOON + LEASE)
            taken = sql.taken((await sql.run([statement]))[-1])
        assert sorted(row.chat_id for row, _ in taken) == sorted(ids)
        for row, attempt_id in taken:
            assert (row.claim_attempt_id, row.claimed_by, row.claim_expires_at) == (None,) * 3
            assert row.line_card_state == CardState.active
            stored = await chat_row(ledger, row.chat_id)
            assert (stored.claim_attempt_id, stored.claimed_by) == (attempt_id, "a")
            assert stored.claim_expires_at == NOON + LEASE
        assert len({attempt_id for _, attempt_id in taken}) == 3
    finally:
        await ledger.dispose()


async def test_a_chat_the_rule_finds_not_due_is_given_back_by_the_claim(
    ledger: Ledger,
) -> None:
    """The claim takes the due range as the index has it, then the rule re-checks each chat:
    one whose facts changed without a recompute (shared today, its ``next_share_at`` left in
    the past) is given back, its claim dropped and its ``next_share_at`` corrected."""
    pol = policy()
    ids = await _seed(ledger, 3)
    stale = ids[0]
    async with ledger.write() as conn:
        await conn.execute(
            sa.update(chats)
            .where(chats.c.chat_id == stale)
            .values(last_shared_at=NOON - timedelta(hours=1), share_count=1)
        )
    result = await claim_batch(ledger, now=NOON, limit=10, instance="a", lease=LEASE, policy=pol)
    assert sorted(c.chat_id for c in result.claims) == sorted(ids[1:])
    assert result.rescheduled == 1
    row = await chat_row(ledger, stale)
    assert (row.claim_attempt_id, row.claimed_by, row.claim_expires_at) == (None, None, None)
    assert (row.claim_started_at, row.claim_forced) == (None, None)
    assert row.next_share_at == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert await count_due(ledger, NOON) == 0


async def _claim_as_the_previous_release(ledger: Ledger, chat_id: str, attempt_id: int) -> None:
    """An open claim as a daemon of the previous release writes it (a rolling update runs
    both): a ``started`` attempt row, and a lease without ``claim_started_at``."""
    async with ledger.write() as conn:
        await conn.execute(
            sa.insert(attempts).values(
                id=attempt_id,
                chat_id=chat_id,
                line=LINE,
                started_at=NOON,
                instance="old",
                outcome=Outcome.started,
                tries=0,
                forced=False,
            )
        )
        await conn.execute(
            sa.update(chats)
            .where(chats.c.chat_id == chat_id)
            .values(
                claimed_by="old",
                claim_attempt_id=attempt_id,
                claim_expires_at=NOON + LEASE,
                next_share_at=NOON + LEASE,
            )
        )


async def test_an_expired_claim_of_the_previous_release_counts_as_shared(
    ledger: Ledger,
) -> None:
    pol = policy()
    ids = await _seed(ledger, 2)
    await _claim_as_the_previous_release(ledger, ids[0], attempt_id=1_000_000)
    later = NOON + LEASE + timedelta(seconds=1)
    result = await claim_batch(ledger, now=later, limit=10, instance="new", lease=LEASE, policy=pol)
    # The other chat is claimed; the old claim's chat is not shared again today.
    assert [c.chat_id for c in result.claims] == [ids[1]]
    assert result.ambiguous == 1
    row = await chat_row(ledger, ids[0])
    assert row.share_count == 1
    assert row.last_shared_at is not None and row.last_shared_at <= later
    assert row.claim_attempt_id is None
    async with ledger.read() as conn:
        found = (
            await conn.execute(
                sa.select(attempts.c.outcome, attempts.c.started_at).where(
                    attempts.c.id == 1_000_000
                )
            )
        ).all()
    # Its own row is closed, not left started, and keeps the time its call began.
    assert [tuple(r) for r in found] == [(Outcome.ambiguous, NOON)]


async def test_card_not_active_does_not_burn_the_day(ledger: Ledger) -> None:
    pol = policy()
    ids = await _seed(ledger, 3)
    claimed = await claim_batch(ledger, now=NOON, limit=1, instance="a", lease=LEASE, policy=pol)
    err = CardNotActive("card not active", status=404, code=2012)
    rec = CallRecord(
        claimed.claims[0], _decide(err, NOON), NOON, tries=1, http_status=404, error_code=2012
    )  # type: ignore[arg-type]
    await record_results(ledger, [rec], pol, NOON)
    row = await chat_row(ledger, claimed.claims[0].chat_id)
    assert row.share_count == 0
    assert row.last_shared_at is None
    assert row.next_share_at is None
    async with ledger.read() as conn:
        state = (await conn.execute(sa.select(lines.c.card_state))).scalar_one()
        waiting = (
            await conn.execute(sa.select(sa.func.count()).where(chats.c.next_share_at.is_(None)))
        ).scalar_one()
    assert state == CardState.unknown
    assert waiting == 3
    # Card active again: every chat, the rejected one included, is due the same day.
    async with ledger.write() as conn:
        await conn.execute(sa.update(lines).values(card_state=CardState.active))
    later = NOON + timedelta(minutes=1)
    await recompute_chats(ledger, pol, line=LINE, now=later)
    again = await claim_batch(ledger, now=later, limit=10, instance="a", lease=LEASE, policy=pol)
    assert sorted(c.chat_id for c in again.claims) == sorted(ids)


async def test_failure_backs_off_and_release_restores(ledger: Ledger) -> None:
    pol = policy()
    ids = await _seed(ledger, 2)
    claimed = await claim_batch(ledger, now=NOON, limit=2, instance="a", lease=LEASE, policy=pol)
    failed, unstarted = claimed.claims
    rec = CallRecord(
        failed, _decide(ServerError("boom", status=500, code=3006), NOON), NOON, tries=4
    )  # type: ignore[arg-type]
    await record_results(ledger, [rec], pol, NOON)
    await release_claims(ledger, [unstarted], pol, NOON)
    failed_row = await chat_row(ledger, failed.chat_id)
    assert failed_row.consecutive_failures == 1
    assert failed_row.next_share_at == NOON + timedelta(minutes=5)
    released = await chat_row(ledger, unstarted.chat_id)
    assert released.next_share_at == NOON
    assert released.claim_attempt_id is None
    assert {ids[0], ids[1]} == {failed.chat_id, unstarted.chat_id}
    # Both audited, each under its claim's id: the release as skipped, nothing sent.
    async with ledger.read() as conn:
        written = {
            a.id: a.outcome
            for a in await conn.execute(sa.select(attempts.c.id, attempts.c.outcome))
        }
    assert written == {failed.attempt_id: Outcome.failed, unstarted.attempt_id: Outcome.skipped}


async def test_late_outcome_after_takeover_is_not_applied_twice(ledger: Ledger) -> None:
    pol = policy()
    await _seed(ledger, 1)
    claimed = await claim_batch(ledger, now=NOON, limit=1, instance="slow", lease=LEASE, policy=pol)
    later = NOON + LEASE + timedelta(seconds=1)
    taken_over = await claim_batch(
        ledger, now=later, limit=1, instance="other", lease=LEASE, policy=pol
    )
    assert taken_over.ambiguous == 1
    rec = CallRecord(claimed.claims[0], _decide(None, later), later, tries=1)  # type: ignore[arg-type]
    lost = await record_results(ledger, [rec], pol, later)
    assert lost == [rec]
    row = await chat_row(ledger, claimed.claims[0].chat_id)
    assert row.share_count == 1
    # One row for the attempt, and the verdict written first (ambiguous) is kept.
    async with ledger.read() as conn:
        written = (
            await conn.execute(sa.select(attempts.c.id, attempts.c.outcome, attempts.c.instance))
        ).all()
    assert [tuple(a) for a in written] == [
        (claimed.claims[0].attempt_id, Outcome.ambiguous, "slow")
    ]


async def test_reserved_attempt_ids_are_never_taken_by_other_rows(ledger: Ledger) -> None:
    """Attempt ids are reserved at claim time without a row; an attempt row written
    meanwhile with the table's own ids (no id given) never takes one of them."""
    pol = policy()
    ids = await _seed(ledger, 4)
    first = await claim_batch(ledger, now=NOON, limit=2, instance="a", lease=LEASE, policy=pol)
    async with ledger.write() as conn:
        await conn.execute(
            sa.insert(attempts).values(
                chat_id=ids[0], started_at=NOON, outcome=Outcome.skipped, instance="x"
            )
        )
    second = await claim_batch(ledger, now=NOON, limit=2, instance="a", lease=LEASE, policy=pol)
    async with ledger.read() as conn:
        other = (await conn.execute(sa.select(attempts.c.id))).scalar_one()
    reserved = [c.attempt_id for c in first.claims + second.claims]
    assert len(set(reserved)) == 4
    assert other not in reserved
    assert (
        max(c.attempt_id for c in first.claims) < other < min(c.attempt_id for c in second.claims)
    )


@pytest.mark.parametrize("replicas", [3])
async def test_concurrent_replicas_never_claim_the_same_chat(
    ledger_url: str, replicas: int
) -> None:
    pol = policy()
    ledgers = [Ledger(create_engine(ledger_url, pool_size=2)) for _ in range(replicas)]
    try:
        await _seed(ledgers[0], 300)

        async def drain(led: Ledger, name: str) -> list[str]:
            got: list[str] = []
            while True:
                res = await claim_batch(
                    led, now=NOON, limit=25, instance=name, lease=LEASE, policy=pol
                )
                if not res.claims:
                    return got
                got += [c.chat_id for c in res.claims]

        results = await asyncio.gather(*(drain(led, f"r{i}") for i, led in enumerate(ledgers)))
    finally:
        for led in ledgers:
            await led.dispose()
    every = [cid for r in results for cid in r]
    assert len(every) == 300
    assert len(set(every)) == 300


async def _count_row_writes(ledger: Ledger) -> None:
    """From now on, every row updated in ``chats`` or ``lines`` adds one to ``row_writes.n``."""
    async with ledger.write() as conn:
        await conn.execute(sa.text("CREATE TABLE row_writes (n INTEGER NOT NULL)"))
        await conn.execute(sa.text("INSERT INTO row_writes (n) VALUES (0)"))
        if ledger.is_sqlite:
            for table in ("chats", "lines"):
                await conn.execute(
                    sa.text(
                        f"CREATE TRIGGER count_{table}_writes AFTER UPDATE ON {table}"
                        " BEGIN UPDATE row_writes SET n = n + 1; END"
                    )
                )
            return
        await conn.execute(
            sa.text(
                "CREATE FUNCTION count_row_write() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN UPDATE row_writes SET n = n + 1; RETURN NULL; END $$"
            )
        )
        for table in ("chats", "lines"):
            await conn.execute(
                sa.text(
                    f"CREATE TRIGGER count_{table}_writes AFTER UPDATE ON {table}"
                    " FOR EACH ROW EXECUTE FUNCTION count_row_write()"
                )
            )


async def _row_writes(ledger: Ledger) -> int:
    async with ledger.read() as conn:
        return int((await conn.execute(sa.text("SELECT n FROM row_writes"))).scalar_one())


async def test_card_gone_answers_stop_the_line_with_one_write_per_row(ledger: Ledger) -> None:
    """Several 2012 answers on one line in one batch: the line and each of its waiting chats
    are written once, and the chats already stopped are not written at all."""
    pol = policy()
    ids = await _seed(ledger, 20)
    stopped = ids[-5:]  # chats of the line that are not due at all (nothing to stop)
    async with ledger.write() as conn:
        await conn.execute(
            sa.update(chats).where(chats.c.chat_id.in_(stopped)).values(next_share_at=None)
        )
    claimed = await claim_batch(ledger, now=NOON, limit=6, instance="a", lease=LEASE, policy=pol)
    assert len(claimed.claims) == 6
    await _count_row_writes(ledger)
    gone = CardNotActive("card not active", status=404, code=2012)
    done = NOON + timedelta(seconds=1)
    records = (
        [
            CallRecord(  # type: ignore[arg-type]
                claim, _decide(gone, done), done, tries=1, http_status=404, error_code=2012
            )
            for claim in claimed.claims[:4]
        ]
        + [CallRecord(claim, _decide(None, done), done, tries=1) for claim in claimed.claims[4:]]
    )  # type: ignore[arg-type]
    assert await record_results(ledger, records, pol, done) == []
    # 6 recorded chats, the 9 waiting chats of the line stopped once each, the line once.
    assert await _row_writes(ledger) == 6 + 9 + 1
    async with ledger.read() as conn:
        waiting = (
            await conn.execute(sa.select(sa.func.count()).where(chats.c.next_share_at.is_not(None)))
        ).scalar_one()
    assert waiting == 0
