"""Due query at scale: select and claim one batch of 500 in ledgers of 10k, 100k and 1M chats.

    python -m bench.due_query [--sizes 10000,100000,1000000] [--repeats 20]

1% of each ledger is due, and never less than one batch, so every size claims full batches.
Each repeat claims one batch (the due query, the rule re-check,
500 intent rows and 500 leases, one transaction), then the claims are undone outside the
timing so the next repeat sees the same ledger. The ratio 1M / 10k shows whether the cost
grows with the ledger (1.0 = flat).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import timedelta

import sqlalchemy as sa

from bench.common import fill_ledger, ledger_url, median, open_policy, table
from scheduler import clock
from scheduler.ledger.checkpoint import Checkpointer
from scheduler.ledger.claims import claim_batch
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chats
from scheduler.ledger.models import attempts_table


async def measure(url: str, repeats: int, batch: int) -> list[float]:
    # As in the daemon: on SQLite, commits leave checkpoints to a background task.
    ledger = Ledger(create_engine(url, pool_size=2, background_checkpoint=True))
    policy = open_policy(clock.now())
    times = []
    stopping = asyncio.Event()
    checkpoints = (
        asyncio.create_task(Checkpointer(ledger).run(stopping)) if ledger.is_sqlite else None
    )
    try:
        for _ in range(repeats):
            now = clock.now()
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
    return times


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
        for size in sizes:
            with ledger_url(kind) as url:
                ids = [f"chat-{uuid.UUID(int=i).hex}" for i in range(size)]
                due = set(ids[:: max(1, min(100, size // args.batch))])
                t0 = time.perf_counter()
                fill_ledger(url, ids, due, clock.now())
                load = time.perf_counter() - t0
                times = asyncio.run(measure(url, args.repeats, args.batch))
                per_size[size] = median(times)
                rows.append(
                    [
                        kind,
                        size,
                        len(due),
                        min(len(due), args.batch),
                        per_size[size] * 1000,
                        max(times) * 1000,
                        load,
                    ]
                )
        ratio = per_size[sizes[-1]] / per_size[sizes[0]]
        summary.append(
            f"{kind} {sizes[-1]}/{sizes[0]} = {ratio:.2f} ({per_size[sizes[-1]] * 1000:.1f} ms)"
        )
    table(
        f"select + claim one batch (median of {args.repeats})",
        ["ledger", "chats", "due", "batch", "median ms", "max ms", "load s"],
        rows,
    )
    print(f"\nsummary: batch cost at largest/smallest ledger: {'; '.join(summary)}")


if __name__ == "__main__":
    main()
