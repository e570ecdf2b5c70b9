"""The peer: share-scheduler against the same job written on a procrastinate job queue.

    python -m bench.peer_procrastinate [--chats 20000] [--latencies 0,100] [--concurrency 16]
                                       [--runs 3]

Both contenders run as their own processes, on the same PostgreSQL server (a fresh database
each, created and dropped here), the same chats (all due), the same simulator process and
latency, at the same concurrency:

- share-scheduler: the real daemon, ``share-scheduler run`` with a schedule file, over a
  ledger bulk-loaded with the chats (its state, learned from webhooks in real use: not
  counted). Its share pass is unthrottled (``requests_per_second`` 1e6; the stock 20/s is
  Linq's per-line pace, see README "Performance") and claims batches of 500. It logs at
  info, as shipped.
- the peer (``bench/peer_app.py``): today's jobs, one per chat with a queueing lock
  ``share-{chat_id}-{day}``, deferred in batches of 500 (counted: a job queue pays this every
  day), then a ``procrastinate worker --concurrency C`` process runs them, each job one share
  call. Logs as procrastinate's CLI does by default.

Per contender and latency, medians of the runs: shares/s (chats over the span from the first
to the last share the simulator applied); per share, the database's rows written
(tup_inserted + tup_updated + tup_deleted), commits (xact_commit), both from pg_stat_database
deltas of that database, and WAL bytes (pg_current_wal_lsn() deltas: WAL is cluster-wide, so
anything else writing to the server meanwhile is counted too), and the records of the
contender's database alone (pg_walinspect), of which full-page images; start-up (process start to
the first share call the simulator saw); the worker process's peak RSS. Then ours / peer,
and with latency, each one's time over the ideal N x latency / C. The simulator's shares log
must show every chat shared exactly once by each contender, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from procrastinate import PsycopgConnector

from bench import peer_app
from bench.common import (
    PG_DSN,
    TOKEN,
    Timer,
    applied_shares,
    cpu_seconds,
    fill_ledger,
    ledger_url,
    median,
    pg_database,
    prepare_daemon,
    seed,
    share_log,
    simulator,
    table,
    vm_hwm_mb,
)
from scheduler import clock
from scheduler.demo.processes import SimProcess, base_env

CONTENDERS = ("share-scheduler", "procrastinate")
DEFER_BATCH = 500
MAX_TRIES = 3
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DbCounters:
    rows_written: int
    commits: int
    wal_lsn: str
    server_started: str


class ServerRestarted(Exception):
    """The PostgreSQL server restarted during a run (the machine is shared): its figures are
    void, and the WAL it wrote may be gone."""


def server_started() -> str:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()
    assert row is not None
    return str(row[0])


@dataclass(frozen=True)
class RunResult:
    shares_per_second: float
    span_seconds: float
    rows_per_share: float
    commits_per_share: float
    wal_bytes_per_share: float
    own_wal_bytes_per_share: float
    own_fpi_bytes_per_share: float
    enqueue_seconds: float
    startup_seconds: float
    peak_rss_mb: float
    cpu_ms_per_share: float
    calls: int


def db_counters(url: str) -> DbCounters:
    """The database's write counters and the server's WAL position, once no backend is
    connected to it: a backend reports its counts to pg_stat_database when it exits."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise SystemExit(f"connections to {name} stayed open for 60 s")
            time.sleep(0.05)
        time.sleep(0.2)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted, xact_commit,"
            " pg_current_wal_lsn()::text, pg_postmaster_start_time()::text"
            " FROM pg_stat_database WHERE datname = %s",
            (name,),
        ).fetchone()
    assert row is not None
    return DbCounters(int(row[0]), int(row[1]), str(row[2]), str(row[3]))


@dataclass(frozen=True)
class DbWrites:
    rows_written: int
    commits: int
    wal_bytes: int
    own_wal_bytes: int
    own_fpi_bytes: int


# WAL records that name a block of the database (block_ref "rel spc/db/rel ..."), and the
# records (commits) of the transactions that wrote such blocks; of which full-page images,
# whose bytes depend on when checkpoints fall (other databases on the server force them).
_OWN_WAL = """
WITH records AS (
    SELECT xid, record_length, fpi_length, block_ref
    FROM pg_get_wal_records_info(%(start)s, %(end)s)
), own_xids AS (
    SELECT DISTINCT xid FROM records WHERE block_ref LIKE %(ref)s AND xid <> '0'
)
SELECT coalesce(sum(record_length), 0), coalesce(sum(fpi_length), 0) FROM records
WHERE block_ref LIKE %(ref)s OR xid IN (SELECT xid FROM own_xids)
"""


@contextmanager
def wal_kept() -> Iterator[None]:
    """The server keeps its WAL from now until the block ends (a temporary replication slot,
    gone with this connection), so the run's records can be read back after a checkpoint."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        slot = f"bench_{uuid.uuid4().hex[:10]}"
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", (slot,))
        yield


def db_writes(url: str, before: DbCounters, after: DbCounters) -> DbWrites:
    """What the database wrote between two readings. WAL is the server's: besides the
    position's delta (anything written to any database), the records of this database
    alone, read back with pg_walinspect (installed in it after the run)."""
    if after.server_started != before.server_started:
        raise ServerRestarted
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        row = conn.execute(
            "SELECT oid, pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn) FROM pg_database"
            " WHERE datname = current_database()",
            (after.wal_lsn, before.wal_lsn),
        ).fetchone()
        assert row is not None
        oid, total = row
        own = conn.execute(
            _OWN_WAL, {"start": before.wal_lsn, "end": after.wal_lsn, "ref": f"%/{oid}/%"}
        ).fetchone()
    assert own is not None
    return DbWrites(
        rows_written=after.rows_written - before.rows_written,
        commits=after.commits - before.commits,
        wal_bytes=int(total),
        own_wal_bytes=int(own[0]),
        own_fpi_bytes=int(own[1]),
    )


def wait_for_shares(
    sim: SimProcess, target: int, pid: int, alive: Callable[[], bool]
) -> tuple[float, float]:
    """Wait until the simulator has applied ``target`` shares in all. Returns the process's
    peak RSS (MB) and the CPU time it has used (s)."""
    deadline = time.monotonic() + 3600
    while applied_shares(sim) < target:
        if not alive():
            raise SystemExit(f"process {pid} exited before its chats were shared")
        if time.monotonic() > deadline:
            raise SystemExit("the chats were not shared within an hour")
        time.sleep(0.2)
    return vm_hwm_mb(pid), cpu_seconds(pid)


def finish(
    sim: SimProcess,
    url: str,
    chat_ids: Sequence[str],
    contender: str,
    proc: subprocess.Popen[bytes],
    stop: Callable[[], int],
    *,
    log_path: Path,
    started: float,
    before: DbCounters,
    shared_before: int,
    enqueue_seconds: float = 0.0,
) -> RunResult:
    """Wait for the contender's process to share every chat (the simulator had applied
    ``shared_before`` shares before it started), stop it, and measure the run."""
    try:
        try:
            target = shared_before + len(chat_ids)
            rss, cpu = wait_for_shares(sim, target, proc.pid, lambda: proc.poll() is None)
        finally:
            code = stop()
        if code != 0:
            raise SystemExit(f"{contender} exited with {code}; see {log_path}")
        writes = db_writes(url, before, db_counters(url))
    except (SystemExit, psycopg.Error) as exc:
        if server_started() != before.server_started:
            raise ServerRestarted from exc
        raise
    log = share_log(sim, chat_ids)
    log.check_once(contender)
    n = len(chat_ids)
    return RunResult(
        shares_per_second=n / log.span_seconds,
        span_seconds=log.span_seconds,
        rows_per_share=writes.rows_written / n,
        commits_per_share=writes.commits / n,
        wal_bytes_per_share=writes.wal_bytes / n,
        own_wal_bytes_per_share=writes.own_wal_bytes / n,
        own_fpi_bytes_per_share=writes.own_fpi_bytes / n,
        enqueue_seconds=enqueue_seconds,
        startup_seconds=log.first_call - started,
        peak_rss_mb=rss,
        cpu_ms_per_share=cpu * 1000 / n,
        calls=log.calls,
    )


def run_ours(sim: SimProcess, chat_ids: list[str], concurrency: int) -> RunResult:
    with wal_kept(), ledger_url("postgresql") as url:
        fill_ledger(url, chat_ids, set(chat_ids), clock.now())
        workdir = Path(tempfile.mkdtemp(prefix="bench-peer-ours-"))
        daemon = prepare_daemon(sim, url, workdir, concurrency=concurrency, log_level="info")
        before = db_counters(url)
        shared_before = applied_shares(sim)
        started = time.time()
        daemon.start(timeout=120)
        assert daemon.proc is not None
        return finish(
            sim,
            url,
            chat_ids,
            "share-scheduler",
            daemon.proc,
            lambda: daemon.stop(timeout=120),
            log_path=daemon.log_path,
            started=started,
            before=before,
            shared_before=shared_before,
        )


async def _apply_schema(url: str) -> None:
    connector = PsycopgConnector(conninfo=url, min_size=1, max_size=1)
    with peer_app.app.replace_connector(connector) as app:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()


async def _defer(url: str, chat_ids: list[str]) -> None:
    """The peer's daily step: a job per due chat, in batches (one statement each)."""
    day = clock.now().date()
    connector = PsycopgConnector(conninfo=url, min_size=1, max_size=1)
    with peer_app.app.replace_connector(connector) as app:
        async with app.open_async():
            for i in range(0, len(chat_ids), DEFER_BATCH):
                jobs = peer_app.share_jobs(chat_ids[i : i + DEFER_BATCH], day)
                await app.job_manager.batch_defer_jobs_async(jobs)


def run_peer(sim: SimProcess, chat_ids: list[str], concurrency: int) -> RunResult:
    workdir = Path(tempfile.mkdtemp(prefix="bench-peer-procrastinate-"))
    with wal_kept(), pg_database() as url:
        asyncio.run(_apply_schema(url))
        before = db_counters(url)
        with Timer() as enqueue:
            asyncio.run(_defer(url, chat_ids))
        env = base_env(
            PEER_DATABASE_URL=url,
            PEER_CONCURRENCY=str(concurrency),
            LINQ_API_BASE=sim.api_base,
            LINQ_API_KEY=TOKEN,
        )
        log_path = workdir / "worker.log"
        shared_before = applied_shares(sim)
        with log_path.open("wb") as log:
            started = time.time()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "procrastinate",
                    "--app=bench.peer_app.app",
                    "worker",
                    "--concurrency",
                    str(concurrency),
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

            def stop() -> int:
                proc.send_signal(signal.SIGTERM)
                return proc.wait(120)

            return finish(
                sim,
                url,
                chat_ids,
                "procrastinate",
                proc,
                stop,
                log_path=log_path,
                started=started,
                before=before,
                shared_before=shared_before,
                enqueue_seconds=enqueue.seconds,
            )


def run_once(name: str, sim: SimProcess, chats: int, concurrency: int) -> RunResult:
    """One run of a contender over fresh chats; run again (fresh chats and database) if the
    server restarted meanwhile."""
    for _ in range(MAX_TRIES):
        try:
            return RUNNERS[name](sim, seed(sim, chats), concurrency)
        except ServerRestarted:
            print(f"note: PostgreSQL restarted during a {name} run; running it again", flush=True)
    raise SystemExit(f"PostgreSQL restarted during {MAX_TRIES} tries of a {name} run")


RUNNERS = {"share-scheduler": run_ours, "procrastinate": run_peer}
METRICS = (
    ("shares/s", "shares_per_second"),
    ("rows/share", "rows_per_share"),
    ("commits/share", "commits_per_share"),
    ("WAL B/share", "wal_bytes_per_share"),
    ("own WAL B/share", "own_wal_bytes_per_share"),
    ("of which FPI B", "own_fpi_bytes_per_share"),
    ("start-up s", "startup_seconds"),
    ("peak RSS MB", "peak_rss_mb"),
    ("CPU ms/share", "cpu_ms_per_share"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=20_000)
    parser.add_argument("--latencies", default="0,100", help="simulator latencies, ms")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    latencies = [float(v) for v in args.latencies.split(",")]
    rows: list[list[object]] = []
    ratio_rows: list[list[object]] = []
    summary: list[str] = []
    for latency in latencies:
        results: dict[str, list[RunResult]] = {name: [] for name in CONTENDERS}
        with simulator(latency_ms=latency) as sim:
            for run in range(args.runs):
                # Alternate who goes first, so that machine noise hits both alike.
                order = CONTENDERS if run % 2 == 0 else CONTENDERS[::-1]
                for name in order:
                    results[name].append(run_once(name, sim, args.chats, args.concurrency))

        def med(name: str, attr: str, results: dict[str, list[RunResult]] = results) -> float:
            return median([getattr(r, attr) for r in results[name]])

        ideal = args.chats * latency / 1000 / args.concurrency
        for name in CONTENDERS:
            calls = sum(r.calls for r in results[name])
            shared = args.chats * args.runs
            rows.append(
                [
                    name,
                    f"{latency:.0f}",
                    *(med(name, attr) for _, attr in METRICS),
                    med(name, "enqueue_seconds"),
                    f"{med(name, 'span_seconds') / ideal:.3f}" if ideal else "-",
                    f"yes ({shared} of {shared}, {calls} calls)",
                ]
            )
        ours, peer = CONTENDERS
        # A run without a checkpoint has no full-page images: no ratio to give.
        ratios = [
            med(ours, attr) / med(peer, attr) if med(peer, attr) else float("nan")
            for _, attr in METRICS
        ]
        ratio_rows.append([f"{latency:.0f}", *ratios])
        part = f"at {latency:.0f} ms ours/peer " + ", ".join(
            f"{label} {ratio:.2f}" for (label, _), ratio in zip(METRICS, ratios, strict=True)
        )
        if ideal:
            part += (
                f"; time / ideal {med(ours, 'span_seconds') / ideal:.2f}"
                f" vs {med(peer, 'span_seconds') / ideal:.2f}"
            )
        summary.append(part)
    headers = [label for label, _ in METRICS]
    table(
        f"share-scheduler vs procrastinate: {args.chats} due chats, concurrency"
        f" {args.concurrency}, PostgreSQL, median of {args.runs}",
        ["contender", "latency ms", *headers, "enqueue s", "time/ideal", "each chat once"],
        rows,
    )
    table("ours / peer (medians)", ["latency ms", *headers], ratio_rows)
    print(
        "\nWAL is cluster-wide: 'WAL B/share' (the position's delta) counts whatever else"
        " wrote to the server meanwhile; 'own WAL B/share' is the records of the contender's"
        " database alone (pg_walinspect), 'of which FPI B' its full-page images, which"
        " checkpoints add (other databases created on the server force them): compare the"
        " rest run to run. shares/s spans the first to the last share"
        " applied; the peer's enqueue (its daily defer) is counted in its rows, commits and"
        " WAL, not in its shares/s."
    )
    print(f"\nsummary: {'; '.join(summary)}")


if __name__ == "__main__":
    main()
