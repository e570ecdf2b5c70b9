"""Due query at scale: select and claim one batch of 500 in ledgers of 10k, 100k and 1M chats.

    python -m bench.due_query [--sizes 10000,100000,1000000] [--repeats 20]

1% of each ledger is due, and never less than one batch, so every size claims full batches.
Each repeat first times the due query alone (the index range read of 500 rows and the rule's
re-check of each), then claims one batch (the same query and re-check, then one update of
the 500 chats' claim columns -- the intent and the lease -- in one transaction); the claims
are undone outside the timing so the next repeat sees the same ledger. The ratio 1M / 10k
shows whether the cost grows with the ledger (1.0 = flat). The floor is the same write shape
through the bare async driver (see ``driver_floor``): one ``UPDATE ... RETURNING`` of the
batch's rows in one transaction; "x floor" is the claim's cost over it (median of the
repeats' ratios, each floor run right after its claim).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiosqlite
import psycopg
import sqlalchemy as sa

from bench.common import fill_ledger, ledger_url, median, open_policy, table
from scheduler import clock
from scheduler.core.chat import ChatState
from scheduler.core.rule import Policy
from scheduler.daemon.lifecycle import settle_heap
from scheduler.ledger.checkpoint import Checkpointer
from scheduler.ledger.claim_sql import ClaimSQL
from scheduler.ledger.claims import claim_batch
from scheduler.ledger.dialects.base import FACT_COLUMNS
from scheduler.ledger.dialects.postgres import PostgresDialect
from scheduler.ledger.dialects.sqlite import SqliteDialect, bind_time
from scheduler.ledger.driver import _run_on_sqlite
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chats, compute_next
from scheduler.ledger.models import attempts_table


async def due_query(ledger: Ledger, now: datetime, batch: int, policy: Policy) -> tuple[int, float]:
    """The due query alone, as ``claim_batch`` runs it: the index range read of ``batch``
    rows and the rule's re-check of each, in a transaction that writes nothing. Returns the
    chats found due and the seconds of the rule's re-check alone (no SQL, no conversion)."""
    async with ledger.write() as conn:
        sql = await ClaimSQL.open(conn)
        rows = await sql.due(now, batch)
        t0 = time.perf_counter()
        found = sum(1 for row in rows if (nxt := compute_next(row, policy, now)) and nxt <= now)
        return found, time.perf_counter() - t0


@dataclass
class Timings:
    """Seconds per repeat: the due query alone, the whole claim of one batch, the floor, the
    claim's own statements through the bare driver, and the rule's re-check of the batch
    alone (which any claim that keeps the protocol's re-check pays on top of its SQL)."""

    queries: list[float] = field(default_factory=list)
    claims: list[float] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)
    statements: list[float] = field(default_factory=list)
    rules: list[float] = field(default_factory=list)


async def measure(url: str, repeats: int, batch: int) -> Timings:
    """Per repeat: the due query alone, the whole claim of one batch, the floor, then the
    claim's own statements bare. Interleaved, so that the load of a shared machine weighs on
    each alike."""
    # As in the daemon: on SQLite, commits leave checkpoints to a background task.
    ledger = Ledger(create_engine(url, pool_size=2, background_checkpoint=True))
    policy = open_policy(clock.now())
    timings = Timings()
    queries, times, floors = timings.queries, timings.claims, timings.floors
    floor = DriverFloor(url)
    await floor.open()
    stopping = asyncio.Event()
    checkpoints = (
        asyncio.create_task(Checkpointer(ledger).run(stopping)) if ledger.is_sqlite else None
    )
    settle_heap()  # as the daemon does once started
    try:
        for _ in range(repeats):
            now = clock.now()
            t0 = time.perf_counter()
            found, rule = await due_query(ledger, now, batch, policy)
            queries.append(time.perf_counter() - t0)
            timings.rules.append(rule)
            t0 = time.perf_counter()
            result = await claim_batch(
                ledger,
                now=now,
                limit=batch,
                instance="bench",
                lease=timedelta(minutes=5),
                policy=policy,
            )
            times.append(time.perf_counter() - t0)
            ids = [c.chat_id for c in result.claims]
            assert found == len(ids), (found, len(ids))
            # Undone as it was made: the claim columns cleared, ``next_share_at`` (which the
            # claim leaves as it is) untouched, so that the next repeat finds the ledger as
            # this one did (a HOT update on PostgreSQL, no new due-index entry to wade through).
            async with ledger.write() as conn:
                await conn.execute(
                    sa.update(chats)
                    .where(chats.c.chat_id.in_(ids))
                    .values(
                        claimed_by=None,
                        claim_attempt_id=None,
                        claim_expires_at=None,
                        claim_started_at=None,
                        claim_forced=None,
                    )
                )
                await conn.execute(sa.delete(attempts_table))
            floors.append(await floor.once(batch, expected=len(ids)))
            timings.statements.append(await floor.claim_statements(batch, expected=len(ids)))
    finally:
        await floor.close()
        stopping.set()
        if checkpoints is not None:
            await checkpoints
        await ledger.dispose()
    return timings


def _returning_claim(mark: str, lock: str) -> str:
    """The floor's one statement: lease the ``batch`` unclaimed chats due soonest and return
    their facts (the columns the claim reads), as a bare ``UPDATE ... RETURNING``. As the
    claim, it leaves ``next_share_at`` as it is and skips claimed chats by a claim column."""
    return (
        f"UPDATE chats SET claimed_by = {mark}, claim_expires_at = {mark}"
        f" WHERE chat_id IN (SELECT chat_id FROM chats WHERE next_share_at <= {mark}"
        f" AND claimed_by IS NULL ORDER BY next_share_at LIMIT {mark}{lock})"
        f" RETURNING {', '.join(FACT_COLUMNS)}"
    )


SQLITE_FLOOR = _returning_claim("?", "")
PG_FLOOR = _returning_claim("%s", " FOR UPDATE SKIP LOCKED")


class DriverFloor:
    """The same write shape through the bare async driver the daemon uses (aiosqlite,
    psycopg): one transaction of one ``UPDATE ... RETURNING`` of ``batch`` rows, read whole.

    No rule re-check, no attempt ids, no SQLAlchemy: the floor under ``claim_batch``. SQLite
    runs with the daemon's settings (checkpoints left to the background task). Each run is
    timed alone; its leases are undone outside the timing.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite: aiosqlite.Connection | None = None
        self.pg: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def open(self) -> None:
        if self.url.startswith("sqlite"):
            self.sqlite = await aiosqlite.connect(self.url.split("///", 1)[1], isolation_level=None)
            for pragma in (
                "journal_mode=WAL",
                "synchronous=NORMAL",
                "foreign_keys=ON",
                "wal_autocheckpoint=0",
            ):
                await self.sqlite.execute(f"PRAGMA {pragma}")
            return
        dsn = self.url.replace("postgresql+psycopg://", "postgresql://")
        self.pg = await psycopg.AsyncConnection.connect(dsn)

    async def close(self) -> None:
        if self.sqlite is not None:
            await self.sqlite.close()
        if self.pg is not None:
            await self.pg.close()

    async def once(self, batch: int, expected: int) -> float:
        """Seconds for one claim-shaped ``UPDATE ... RETURNING`` of up to ``batch`` rows: the
        ``expected`` rows the claim just took (fewer than a batch on a small ledger)."""
        now = clock.now()
        end = now + timedelta(minutes=5)
        if self.sqlite is not None:
            db = self.sqlite
            t0 = time.perf_counter()
            await db.execute("BEGIN IMMEDIATE")
            rows = await db.execute_fetchall(
                SQLITE_FLOOR,
                ("bench", bind_time(end), bind_time(now), batch),
            )
            await db.execute("COMMIT")
            seconds = time.perf_counter() - t0
            await db.execute(
                "UPDATE chats SET claimed_by = NULL, claim_expires_at = NULL"
                " WHERE claimed_by IS NOT NULL"
            )
        else:
            assert self.pg is not None
            pg = self.pg
            t0 = time.perf_counter()
            async with pg.cursor() as cur:
                await cur.execute(PG_FLOOR, ("bench", end, now, batch))
                rows = await cur.fetchall()
            await pg.commit()
            seconds = time.perf_counter() - t0
            await pg.execute(
                "UPDATE chats SET claimed_by = NULL, claim_expires_at = NULL"
                " WHERE claimed_by IS NOT NULL"
            )
            await pg.commit()
        assert len(list(rows)) == expected, (len(list(rows)), expected)
        return seconds

    async def claim_statements(self, batch: int, expected: int) -> float:
        """Seconds for the claim's own statements (``scheduler.ledger.dialects``) through the
        bare driver, in one transaction: on SQLite the due read, then the claim of the chats
        read by their ids; on PostgreSQL the one statement that reads and claims. No rule,
        no conversion of the rows, no SQLAlchemy: what ``claim_batch`` costs over this is
        Python's."""
        now = clock.now()
        end = now + timedelta(minutes=5)
        if self.sqlite is not None:
            db = self.sqlite
            lite = SqliteDialect()
            t0 = time.perf_counter()
            await db.execute("BEGIN IMMEDIATE")
            due = lite.due(now, batch)
            rows = await db.execute_fetchall(due.sql, due.params)
            # The claim reads only the chat ids of its records: the rows as they are.
            read = [ChatState._make(row) for row in rows]
            claimed = await db._execute(
                _run_on_sqlite,
                db._conn,
                lite.claim(read, now=now, instance="bench", lease_end=end, forced=False),
            )
            await db.execute("COMMIT")
            seconds = time.perf_counter() - t0
            await db.execute(f"UPDATE chats SET {_CLEAR_CLAIM} WHERE claimed_by IS NOT NULL")
            count = sum(len(rows) for rows in claimed)
        else:
            assert self.pg is not None
            pg = self.pg
            claim = PostgresDialect().claim_due(now, batch, instance="bench", lease_end=end)
            t0 = time.perf_counter()
            async with pg.cursor() as cur:
                await cur.execute(claim.sql, claim.params)
                count = len(await cur.fetchall())
            await pg.commit()
            seconds = time.perf_counter() - t0
            await pg.execute(f"UPDATE chats SET {_CLEAR_CLAIM} WHERE claimed_by IS NOT NULL")
            await pg.commit()
        assert count == expected, (count, expected)
        return seconds


_CLEAR_CLAIM = (
    "claimed_by = NULL, claim_attempt_id = NULL, claim_expires_at = NULL,"
    " claim_started_at = NULL, claim_forced = NULL"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    summary = []
    for kind in args.databases.split(","):
        per_size: dict[int, float] = {}
        query_at: dict[int, float] = {}
        over_floor: dict[int, float] = {}
        own_sql: dict[int, float] = {}
        with_rule: dict[int, float] = {}
        for size in sizes:
            with ledger_url(kind) as url:
                ids = [f"chat-{uuid.UUID(int=i).hex}" for i in range(size)]
                due = set(ids[:: max(1, min(100, size // args.batch))])
                t0 = time.perf_counter()
                fill_ledger(url, ids, due, clock.now())
                load = time.perf_counter() - t0
                timings = asyncio.run(measure(url, args.repeats, args.batch))
                queries, times, floors = timings.queries, timings.claims, timings.floors
                floor = median(floors)
                per_size[size] = median(times)
                query_at[size] = median(queries)
                # Each claim over the floor run right after it: the machine's load of the moment
                # weighs on both.
                over_floor[size] = median([t / f for t, f in zip(times, floors, strict=True)])
                # The claim's own statements bare, over the floor: what its SQL costs; the
                # claim over them: what its Python (the rule, the records, SQLAlchemy) costs.
                own_sql[size] = median(
                    [s / f for s, f in zip(timings.statements, floors, strict=True)]
                )
                # Its statements plus the rule's re-check, both bare: what no claim that
                # keeps the protocol (the rule re-checks every chat it claims) goes below.
                with_rule[size] = median(
                    [
                        (s + r) / f
                        for s, r, f in zip(timings.statements, timings.rules, floors, strict=True)
                    ]
                )
                rows.append(
                    [
                        kind,
                        size,
                        len(due),
                        min(len(due), args.batch),
                        query_at[size] * 1000,
                        per_size[size] * 1000,
                        max(times) * 1000,
                        floor * 1000,
                        over_floor[size],
                        median(timings.statements) * 1000,
                        own_sql[size],
                        median(timings.rules) * 1000,
                        with_rule[size],
                        load,
                    ]
                )
        big, small = sizes[-1], sizes[0]
        summary.append(
            f"{kind} {big}/{small}: claim {per_size[big] / per_size[small]:.2f}"
            f" ({per_size[big] * 1000:.1f} ms), due query {query_at[big] / query_at[small]:.2f}"
            f" ({query_at[big] * 1000:.1f} ms), claim over the driver floor"
            f" {' / '.join(f'{over_floor[size]:.2f}' for size in sizes)}"
            f" (its own statements bare: {' / '.join(f'{own_sql[size]:.2f}' for size in sizes)};"
            f" with the rule's re-check: {' / '.join(f'{with_rule[size]:.2f}' for size in sizes)})"
        )
    table(
        f"due query and claim of one batch (medians of {args.repeats}; max of the claim)",
        [
            "ledger",
            "chats",
            "due",
            "batch",
            "due query ms",
            "claim ms",
            "max ms",
            "floor ms",
            "x floor",
            "own SQL ms",
            "own SQL x floor",
            "rule ms",
            "SQL + rule x floor",
            "load s",
        ],
        rows,
    )
    print(f"\nsummary: batch cost at largest/smallest ledger: {'; '.join(summary)}")


if __name__ == "__main__":
    main()
