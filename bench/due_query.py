"""Due query at scale: select and claim one batch of 500 in ledgers of 10k, 100k and 1M chats.

    python -m bench.due_query [--sizes 10000,100000,1000000] [--repeats 20]

1% of each ledger is due, and never less than one batch, so every size claims full batches.
Each repeat first times the due query alone (the index range read of 500 rows and the rule's
re-check of each), then claims one batch (the same query and re-check, 500 intent rows and
500 leases, one transaction); the claims are undone outside the timing so the next repeat
sees the same ledger. The ratio 1M / 10k shows whether the cost grows with the ledger
(1.0 = flat). The floor is the claim's statements through the bare synchronous driver (see
``driver_floor``), part by part: the database's own share of the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
import uuid
from datetime import datetime, timedelta

import psycopg
import sqlalchemy as sa

from bench.common import LINE, fill_ledger, ledger_url, median, open_policy, table
from scheduler import clock
from scheduler.ledger.checkpoint import Checkpointer
from scheduler.ledger.claim_sql import ClaimSQL
from scheduler.ledger.claims import claim_batch
from scheduler.ledger.dialects import postgres as pg_sql
from scheduler.ledger.dialects import sqlite as sqlite_sql
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chats, compute_next
from scheduler.ledger.models import attempts_table
from scheduler.rule import Policy


async def due_query(ledger: Ledger, now: datetime, batch: int, policy: Policy) -> int:
    """The due query alone, as ``claim_batch`` runs it: the index range read of ``batch``
    rows and the rule's re-check of each, in a transaction that writes nothing."""
    async with ledger.write() as conn:
        sql = await ClaimSQL.open(conn)
        rows = await sql.due(now, batch)
        return sum(1 for row in rows if (nxt := compute_next(row, policy, now)) and nxt <= now)


async def measure(url: str, repeats: int, batch: int) -> tuple[list[float], list[float]]:
    """Per repeat: the due query alone, then the whole claim of one batch (seconds)."""
    # As in the daemon: on SQLite, commits leave checkpoints to a background task.
    ledger = Ledger(create_engine(url, pool_size=2, background_checkpoint=True))
    policy = open_policy(clock.now())
    queries, times = [], []
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
                        next_share_at=now - timedelta(seconds=60),
                    )
                )
                await conn.execute(sa.delete(attempts_table))
    finally:
        stopping.set()
        if checkpoints is not None:
            await checkpoints
        await ledger.dispose()
    return queries, times


FLOOR_PARTS = ("select", "writes", "commit")


def driver_floor(url: str, repeats: int, batch: int) -> dict[str, list[float]]:
    """The claim's own statements through the bare synchronous driver, timed part by part.

    No rule re-check, no asyncio, no SQLAlchemy: what the database itself costs to read the
    due rows, write 500 intent rows and 500 leases (index upkeep, the foreign key) and commit,
    the floor under ``claim_batch``. SQLite runs with the daemon's settings and checkpoints
    outside the timing. Returns the seconds of each part of ``FLOOR_PARTS`` per repeat.
    """
    parts: dict[str, list[float]] = {name: [] for name in FLOOR_PARTS}

    def keep(t0: float, t1: float, t2: float, t3: float) -> None:
        for name, seconds in zip(FLOOR_PARTS, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            parts[name].append(seconds)

    if url.startswith("sqlite"):
        db = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            db.execute(f"PRAGMA {pragma}")
        db.execute("PRAGMA wal_autocheckpoint=0")
        try:
            for _ in range(repeats):
                now = clock.now()
                end = sqlite_sql.bind_time(now + timedelta(minutes=5))
                started = sqlite_sql.bind_time(now)
                t0 = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                rows = db.execute(sqlite_sql.DUE, (started, batch)).fetchall()
                t1 = time.perf_counter()
                first = (db.execute(sqlite_sql.TOP_ATTEMPT).fetchone()[0] or 0) + 1
                ids = [(row[0], first + i) for i, row in enumerate(rows)]
                db.executemany(
                    sqlite_sql.INSERT_ATTEMPTS,
                    [(aid, cid, LINE, started, "bench", False) for cid, aid in ids],
                )
                for start in range(0, len(ids), sqlite_sql.LEASE_ROWS):
                    part = ids[start : start + sqlite_sql.LEASE_ROWS]
                    db.execute(
                        sqlite_sql.lease_update(len(part)),
                        (*(x for pair in part for x in pair), "bench", end, end),
                    )
                t2 = time.perf_counter()
                db.execute("COMMIT")
                keep(t0, t1, t2, time.perf_counter())
                db.execute(
                    "UPDATE chats SET claimed_by = NULL, claim_attempt_id = NULL,"
                    " claim_expires_at = NULL, next_share_at = ?"
                    " WHERE claim_attempt_id IS NOT NULL",
                    (sqlite_sql.bind_time(now - timedelta(seconds=60)),),
                )
                db.execute("DELETE FROM share_attempts")
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()
        return parts
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as pg:
        for _ in range(repeats):
            now = clock.now()
            lease_end = now + timedelta(minutes=5)
            t0 = time.perf_counter()
            rows = pg.execute(pg_sql.DUE, (now, batch)).fetchall()
            t1 = time.perf_counter()
            pg.execute(
                pg_sql.START_ATTEMPTS,
                (
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                    now,
                    "bench",
                    False,
                    "bench",
                    lease_end,
                    lease_end,
                ),
            ).fetchall()
            t2 = time.perf_counter()
            pg.commit()
            keep(t0, t1, t2, time.perf_counter())
            pg.execute(
                "UPDATE chats SET claimed_by = NULL, claim_attempt_id = NULL,"
                " claim_expires_at = NULL, next_share_at = %s WHERE claim_attempt_id IS NOT NULL",
                (now - timedelta(seconds=60),),
            )
            pg.execute("DELETE FROM share_attempts")
            pg.commit()
    return parts


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
        for size in sizes:
            with ledger_url(kind) as url:
                ids = [f"chat-{uuid.UUID(int=i).hex}" for i in range(size)]
                due = set(ids[:: max(1, min(100, size // args.batch))])
                t0 = time.perf_counter()
                fill_ledger(url, ids, due, clock.now())
                load = time.perf_counter() - t0
                queries, times = asyncio.run(measure(url, args.repeats, args.batch))
                parts = driver_floor(url, args.repeats, args.batch)
                floor = median([sum(p) for p in zip(*parts.values(), strict=True)])
                per_size[size] = median(times)
                query_at[size] = median(queries)
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
                        *(median(parts[name]) * 1000 for name in FLOOR_PARTS),
                        per_size[size] / floor,
                        load,
                    ]
                )
        big, small = sizes[-1], sizes[0]
        summary.append(
            f"{kind} {big}/{small}: claim {per_size[big] / per_size[small]:.2f}"
            f" ({per_size[big] * 1000:.1f} ms), due query {query_at[big] / query_at[small]:.2f}"
            f" ({query_at[big] * 1000:.1f} ms)"
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
            *(f"{name} ms" for name in FLOOR_PARTS),
            "x floor",
            "load s",
        ],
        rows,
    )
    print(f"\nsummary: batch cost at largest/smallest ledger: {'; '.join(summary)}")


if __name__ == "__main__":
    main()
