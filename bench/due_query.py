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
from datetime import datetime, timedelta

import aiosqlite
import psycopg
import sqlalchemy as sa

from bench.common import fill_ledger, ledger_url, median, open_policy, table
from scheduler import clock
from scheduler.core.rule import Policy
from scheduler.ledger.checkpoint import Checkpointer
from scheduler.ledger.claim_sql import ClaimSQL
from scheduler.ledger.claims import claim_batch
from scheduler.ledger.dialects.base import FACT_COLUMNS
from scheduler.ledger.dialects.sqlite import bind_time
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chats, compute_next
from scheduler.ledger.models import attempts_table


async def due_query(ledger: Ledger, now: datetime, batch: int, policy: Policy) -> int:
    """The due query alone, as ``claim_batch`` runs it: the index range read of ``batch``
    rows and the rule's re-check of each, in a transaction that writes nothing."""
    async with ledger.write() as conn:
        sql = await ClaimSQL.open(conn)
        rows = await sql.due(now, batch)
        return sum(1 for row in rows if (nxt := compute_next(row, policy, now)) and nxt <= now)


async def measure(
    url: str, repeats: int, batch: int
) -> tuple[list[float], list[float], list[float]]:
    """Per repeat: the due query alone, the whole claim of one batch, then the floor
    (seconds). Interleaved, so that the load of a shared machine weighs on each alike."""
    # As in the daemon: on SQLite, commits leave checkpoints to a background task.
    ledger = Ledger(create_engine(url, pool_size=2, background_checkpoint=True))
    policy = open_policy(clock.now())
    queries, times, floors = [], [], []
    floor = DriverFloor(url)
    await floor.open()
    stopping = asyncio.Event()
    checkpoints = (
        asyncio.create_task(Checkpointer(ledger).run(stopping)) if ledger.is_sqlite else None
    )
    try:
        for _ in range(repeats):
            now = clock.now()
            t0 = time.perf_counter()
            found = await due_query(ledger, now, batch, policy)
            queries.append(time.perf_counter() - t0)
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
                        next_share_at=now - timedelta(seconds=60),
                    )
                )
                await conn.execute(sa.delete(attempts_table))
            floors.append(await floor.once(batch, expected=len(ids)))
    finally:
        await floor.close()
        stopping.set()
        if checkpoints is not None:
            await checkpoints
        await ledger.dispose()
    return queries, times, floors


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
        back = now - timedelta(seconds=60)
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
                "UPDATE chats SET claimed_by = NULL, claim_expires_at = NULL, next_share_at = ?"
                " WHERE claimed_by IS NOT NULL",
                (bind_time(back),),
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
                "UPDATE chats SET claimed_by = NULL, claim_expires_at = NULL, next_share_at = %s"
                " WHERE claimed_by IS NOT NULL",
                (back,),
            )
            await pg.commit()
        assert len(list(rows)) == expected, (len(list(rows)), expected)
        return seconds


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
        for size in sizes:
            with ledger_url(kind) as url:
                ids = [f"chat-{uuid.UUID(int=i).hex}" for i in range(size)]
                due = set(ids[:: max(1, min(100, size // args.batch))])
                t0 = time.perf_counter()
                fill_ledger(url, ids, due, clock.now())
                load = time.perf_counter() - t0
                queries, times, floors = asyncio.run(measure(url, args.repeats, args.batch))
                floor = median(floors)
                per_size[size] = median(times)
                query_at[size] = median(queries)
                # Each claim over the floor run right after it: the machine's load of the moment
                # weighs on both.
                over_floor[size] = median([t / f for t, f in zip(times, floors, strict=True)])
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
                        load,
                    ]
                )
        big, small = sizes[-1], sizes[0]
        summary.append(
            f"{kind} {big}/{small}: claim {per_size[big] / per_size[small]:.2f}"
            f" ({per_size[big] * 1000:.1f} ms), due query {query_at[big] / query_at[small]:.2f}"
            f" ({query_at[big] * 1000:.1f} ms), claim over the driver floor"
            f" {' / '.join(f'{over_floor[size]:.2f}' for size in sizes)}"
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
            "load s",
        ],
        rows,
    )
    print(f"\nsummary: batch cost at largest/smallest ledger: {'; '.join(summary)}")


if __name__ == "__main__":
    main()
