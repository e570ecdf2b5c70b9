"""WAL per share of the claim protocol alone, on PostgreSQL: no daemon, no HTTP, no other writer.

    python -m bench.wal_share [--chats 5000] [--runs 3] [--record-batch 16]

A fresh ledger of ``--chats`` due chats is checkpointed, then every chat is claimed
(``claim_batch``, batches of 500) and its result recorded as shared (``record_results``, in
groups of ``--record-batch``, as the pass's recorder writes them). The WAL records of the
run that belong to the ledger's database are read back with pg_walinspect, per share: all
bytes, of which full-page images, and the record types that weigh most; with the rows
written (``pg_stat_database``). ``bench.peer_procrastinate`` measures the same figures around
the real daemon, where checkpoints forced by other databases being created on a shared
server add full-page images that vary from run to run; here the one checkpoint is taken
before the run, so that repeated runs agree.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import psycopg

from bench.common import fill_ledger, ledger_url, median, open_policy, table
from scheduler import clock
from scheduler.core.share_outcome import decide
from scheduler.ledger.claims import CallRecord, claim_batch, record_results
from scheduler.ledger.engine import Ledger, create_engine

BATCH = 500
_RECORDS = """
WITH r AS (SELECT * FROM pg_get_wal_records_info(%(start)s, %(end)s)),
own AS (SELECT DISTINCT xid FROM r WHERE block_ref LIKE %(ref)s AND xid <> '0')
SELECT resource_manager || ' ' || record_type, count(*), sum(record_length), sum(fpi_length)
FROM r WHERE xid IN (SELECT xid FROM own) GROUP BY 1
"""


async def share_all(url: str, record_batch: int) -> None:
    ledger = Ledger(create_engine(url, pool_size=2))
    policy = open_policy(clock.now())
    try:
        while True:
            now = clock.now()
            claimed = await claim_batch(
                ledger,
                now=now,
                limit=BATCH,
                instance="bench",
                lease=timedelta(minutes=5),
                policy=policy,
            )
            if not claimed.claims:
                return
            done = clock.now()
            shared = decide(
                None,
                now=done,
                maybe_applied=False,
                consecutive_failures=0,
                failure_backoff=timedelta(minutes=5),
            )
            records = [CallRecord(c, shared, done, tries=1) for c in claimed.claims]
            for first in range(0, len(records), record_batch):
                await record_results(
                    ledger, records[first : first + record_batch], policy, clock.now()
                )
    finally:
        await ledger.dispose()


def _rows_written(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    conn.execute("SELECT pg_stat_force_next_flush()")
    row = conn.execute(
        "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database"
        " WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def one_run(chats: int, record_batch: int) -> tuple[float, float, float, Counter[str]]:
    """(WAL bytes, full-page image bytes, rows written) per share, and bytes per record type."""
    with ledger_url("postgresql") as url:
        ids = [f"chat-{uuid.uuid4().hex}" for _ in range(chats)]
        fill_ledger(url, ids, set(ids), clock.now())
        dsn = url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            conn.execute("CHECKPOINT")
            start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
            oid = conn.execute(
                "SELECT oid FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            rows_before = _rows_written(conn)
        assert start is not None and oid is not None
        asyncio.run(share_all(url, record_batch))
        with psycopg.connect(dsn, autocommit=True) as conn:
            # The flushed position: the run's commits waited for their flush, and
            # pg_walinspect refuses an end past it (other writers to the server may be ahead).
            end = conn.execute("SELECT pg_current_wal_flush_lsn()").fetchone()
            assert end is not None
            found = conn.execute(
                _RECORDS, {"start": start[0], "end": end[0], "ref": f"%/{oid[0]}/%"}
            ).fetchall()
            rows = _rows_written(conn) - rows_before
    by_type: Counter[str] = Counter()
    total = fpi = 0
    for kind, _count, length, fpi_length in found:
        by_type[str(kind)] += int(str(length))
        total += int(str(length))
        fpi += int(str(fpi_length))
    return total / chats, fpi / chats, rows / chats, by_type


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record-batch", type=int, default=16)
    args = parser.parse_args()
    runs = [one_run(args.chats, args.record_batch) for _ in range(args.runs)]
    wal = median([r[0] for r in runs])
    fpi = median([r[1] for r in runs])
    rows = median([r[2] for r in runs])
    table(
        f"claim + record of {args.chats} chats, PostgreSQL, per share (each run)",
        ["run", "WAL B", "of which FPI B", "records B", "rows"],
        [[n + 1, r[0], r[1], r[0] - r[1], r[2]] for n, r in enumerate(runs)],
    )
    heaviest = Counter[str]()
    for r in runs:
        heaviest.update(r[3])
    table(
        "record types, WAL B per share (mean of the runs)",
        ["record type", "B"],
        [[kind, b / len(runs) / args.chats] for kind, b in heaviest.most_common(8)],
    )
    print(
        f"\nsummary: per share, medians of {args.runs}: WAL {wal:.0f} B ({fpi:.0f} B of"
        f" full-page images, {wal - fpi:.0f} B of records), {rows:.2f} rows written"
    )


if __name__ == "__main__":
    main()
