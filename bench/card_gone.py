"""Card gone mid-pass: rows the ledger rewrites when a line's card is deleted during a pass.

    python -m bench.card_gone [--chats 20000] [--delete-after 500] [--concurrency 16]

All chats are on one line and due. The line's card is deleted in the simulator after
``--delete-after`` successful shares; the calls then in flight answer 2012 (card not active),
and the pass stops the line. Every row update of ``chats`` and ``lines`` during the pass is
counted by a trigger: the claims and outcomes write each chat they touch, and the answers
2012 stop the line's other chats. The figure to watch is the rows written per chat of the
ledger (about 1 claim + 1 outcome per chat shared, plus 1 per chat stopped).
"""

from __future__ import annotations

import argparse
import asyncio

from bench.common import (
    LINE,
    TOKEN,
    daemon_logging,
    fill_ledger,
    ledger_sql,
    ledger_url,
    seed,
    simulator,
    table,
    timed_share_pass,
)
from scheduler import clock
from scheduler.config import Secret
from scheduler.demo.processes import SimProcess
from scheduler.linq.client import LinqClient
from scheduler.linq.types import ShareResult

_SQLITE_COUNTER = [
    "CREATE TABLE bench_row_writes (tbl TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT INTO bench_row_writes VALUES ('chats', 0), ('lines', 0)",
    *(
        f"CREATE TRIGGER bench_count_{t} AFTER UPDATE ON {t}"
        f" BEGIN UPDATE bench_row_writes SET n = n + 1 WHERE tbl = '{t}'; END"
        for t in ("chats", "lines")
    ),
]
_PG_COUNTER = [
    "CREATE TABLE bench_row_writes (tbl TEXT PRIMARY KEY, n BIGINT NOT NULL)",
    "INSERT INTO bench_row_writes VALUES ('chats', 0), ('lines', 0)",
    # One statement-level trigger per table: per-row triggers would serialise the pass's
    # writers on the counter row and change what is measured.
    "CREATE FUNCTION bench_count_writes() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN UPDATE bench_row_writes SET n = n + (SELECT count(*) FROM changed)"
    " WHERE tbl = TG_TABLE_NAME; RETURN NULL; END $$",
    *(
        f"CREATE TRIGGER bench_count_{t} AFTER UPDATE ON {t} REFERENCING NEW TABLE AS changed"
        " FOR EACH STATEMENT EXECUTE FUNCTION bench_count_writes()"
        for t in ("chats", "lines")
    ),
]


class CardDeletingClient(LinqClient):
    """The daemon's client; deletes the line's card in the simulator after ``after`` shares."""

    def __init__(self, sim: SimProcess, after: int, concurrency: int) -> None:
        super().__init__(sim.api_base, Secret(TOKEN, "bench"), max_connections=concurrency)
        self.sim = sim
        self.after = after
        self.shared = 0

    async def share_contact_card(self, chat_id: str) -> ShareResult:
        result = await super().share_contact_card(chat_id)
        self.shared += 1
        if self.shared == self.after:
            await asyncio.to_thread(self.sim.control, "DELETE", f"cards/{LINE}")
        return result


async def card_gone_pass(
    url: str, sim: SimProcess, delete_after: int, concurrency: int
) -> tuple[float, dict[str, int]]:
    client = CardDeletingClient(sim, delete_after, concurrency)
    seconds, report = await timed_share_pass(url, client, concurrency)
    return seconds, dict(report.outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=20_000)
    parser.add_argument("--delete-after", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    daemon_logging()
    rows = []
    summary = []
    for kind in args.databases.split(","):
        # A fresh simulator per ledger: the card is created afresh with it.
        with simulator() as sim, ledger_url(kind) as url:
            ids = seed(sim, args.chats)
            fill_ledger(url, ids, set(ids), clock.now())
            for statement in _SQLITE_COUNTER if kind == "sqlite" else _PG_COUNTER:
                ledger_sql(url, statement)
            seconds, outcomes = asyncio.run(
                card_gone_pass(url, sim, args.delete_after, args.concurrency)
            )
            written = dict(ledger_sql(url, "SELECT tbl, n FROM bench_row_writes"))
            stopped = ledger_sql(url, "SELECT count(*) FROM chats WHERE next_share_at IS NULL")
            total = int(written["chats"]) + int(written["lines"])
            rows.append(
                [
                    kind,
                    args.chats,
                    outcomes.get("shared", 0),
                    outcomes.get("rejected", 0),
                    int(stopped[0][0]),
                    int(written["chats"]),
                    int(written["lines"]),
                    total / args.chats,
                    seconds,
                ]
            )
            summary.append(f"{kind} {total} rows ({total / args.chats:.2f} per chat)")
    table(
        f"card deleted after {args.delete_after} shares: {args.chats} chats on one line,"
        f" concurrency {args.concurrency}",
        [
            "ledger",
            "chats",
            "shared",
            "rejected (2012)",
            "stopped",
            "chat rows written",
            "line rows written",
            "rows per chat",
            "pass s",
        ],
        rows,
    )
    print(f"\nsummary: rows written by the pass: {'; '.join(summary)}")


if __name__ == "__main__":
    main()
