"""Scale: a 10M-chat PostgreSQL ledger against a 100k one, side by side.

    python -m bench.scale [--chats 100000,10000000] [--due-percent 1] [--pass-chats 1000]
                          [--runs 3] [--repeats 10] [--keep]

Each size is a template database: migrated, then filled in SQL (``INSERT ... SELECT
generate_series``, with the chats' secondary indexes built after the rows), ``due-percent``
of the chats due now and the rest shared a minute before the fill, due again years later.
It is built once; with ``--keep`` it stays for the next run of the benchmark, which reuses it
while the schema's head revision is the same. Each size is measured in its own copy of the
template (``CREATE DATABASE ... TEMPLATE``), dropped afterwards.

Per run and size, in turn (sizes alternate, so machine noise hits both alike):

- due query and claim: one batch of 500 by ``bench.due_query``'s ``measure`` (the daemon's
  own ``claim_batch``), median of ``--repeats``, each claim undone before the next (its
  claim columns cleared: the same chats are claimed again); and the first claim of the run
  alone, the one that finds its chats as the daemon left them (shared, then due again), as
  each day's first claim of a chat does;
- the daemon: ``share-scheduler run`` (passes unthrottled, concurrency 16) against the
  simulator at zero latency. Start-up: ``--pass-chats`` of the due chats given simulator
  chats and due first, from the process start to the first share call the simulator saw
  (and the CPU the daemon had used once its first shares landed: on a loaded machine the
  wall time mostly measures the wait for a core). The pass: once those are shared and the
  start-up card check is over (its gauge read scans the chats table, 1.4 s at 10M, and on
  2 cores would slow whatever runs beside it), the same chats under fresh names, due now;
  pass cost per due chat is the span from the first to the last of their shares over their
  number (and the daemon's CPU meanwhile, over their number), with the server's WAL and its
  full-page images meanwhile (``pg_walinspect``), per due chat. Peak RSS is the daemon's
  VmHWM at the end. Those chats are then made due again (renamed to fresh simulator chats on
  the next run).

Figures: medians per size and the ratio largest / smallest (1.0 = flat), with the targets
(ratios at most 1.3; at the largest size RSS under 150 MB and start-up under 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from bench.common import (
    LINE,
    PG_DSN,
    applied_shares,
    cpu_seconds,
    median,
    migrate,
    pg_database,
    prepare_daemon,
    seed,
    share_log,
    simulator,
    table,
    vm_hwm_mb,
)
from bench.due_query import measure
from scheduler import clock
from scheduler.demo.processes import DaemonProcess, SimProcess
from scheduler.ledger import schema

BATCH = 500
CONCURRENCY = 16
TIMEOUT_SECONDS = 600
RATIO_TARGET = 1.3
RSS_TARGET_MB = 150
STARTUP_TARGET_S = 5.0

# The chats of a ledger, as bench.common.fill_ledger writes them, made by the database: the
# first ``%(due)s`` due since a minute ago, the others shared a minute ago and due in 10 years.
_FILL = """
INSERT INTO chats (chat_id, line, recipients, is_group, service, first_outbound_at,
    last_outbound_at, share_count, status, consecutive_failures, next_share_at,
    last_shared_at, created_at, updated_at)
SELECT
    CASE WHEN i < %(due)s THEN 'due-' ELSE 'idle-' END || lpad(i::text, 9, '0'),
    %(line)s, '+1212555' || lpad((i %% 10000)::text, 4, '0'), false, 'iMessage',
    now() - interval '1 day', now() - interval '1 day',
    CASE WHEN i < %(due)s THEN 0 ELSE 1 END, 'active', 0,
    CASE WHEN i < %(due)s THEN now() - interval '1 minute' ELSE now() + interval '10 years' END,
    CASE WHEN i < %(due)s THEN NULL ELSE now() - interval '1 minute' END,
    now() - interval '1 day', now() - interval '1 day'
FROM generate_series(0, %(chats)s - 1) AS i
"""
# A chat as it was before it was shared (``next_share_at`` as given), under a new id when
# the simulator's chats are new. Its share attempts go first (they hold its id).
_DUE_AGAIN = """
WITH v AS (SELECT * FROM unnest(%(old)s::text[], %(new)s::text[]) AS v(old_id, new_id))
UPDATE chats SET chat_id = v.new_id, share_count = 0, status = 'active', last_shared_at = NULL,
    not_before = NULL, consecutive_failures = 0, last_error = NULL, claimed_by = NULL,
    claim_attempt_id = NULL, claim_expires_at = NULL, claim_started_at = NULL,
    claim_forced = NULL, next_share_at = %(next)s
FROM v WHERE chats.chat_id = v.old_id
"""


@dataclass(frozen=True)
class RunResult:
    due_query_ms: float
    claim_ms: float
    first_claim_ms: float
    pass_ms_per_chat: float
    pass_cpu_ms_per_chat: float
    startup_seconds: float
    startup_cpu_seconds: float
    peak_rss_mb: float
    wal_kb_per_chat: float = 0.0
    fpi_kb_per_chat: float = 0.0


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def template_name(chats: int, due: int, keep: bool) -> str:
    """The template's name. Kept: the sizes and the schema it was built on, so a stale one is
    never reused. Otherwise a name of its own, so that runs at once never share one."""
    if not keep:
        return f"bench_scale_{uuid.uuid4().hex[:10]}"
    revision = re.sub(r"[^a-z0-9]", "", (schema.head_revision() or "none").lower())
    return f"bench_scale_{chats}_{due}_{revision}"[:63]


def _databases(prefix: str) -> list[str]:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
    return [str(row[0]) for row in rows]


def drop_database(name: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def build_template(chats: int, due: int, keep: bool) -> tuple[str, float]:
    """The template database for a size (built unless kept from before); the seconds
    building took."""
    name = template_name(chats, due, keep)
    if name in _databases(name):
        return name, 0.0
    # Kept templates of this size built on an older schema: never reused, several GB each.
    for stale in _databases(f"bench_scale_{chats}_{due}_") if keep else []:
        drop_database(stale)
    started = time.perf_counter()
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = PG_DSN.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        with psycopg.connect(dsn(url), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO lines (number, paused, card_state, card_write_log,"
                " card_write_failures, created_at, updated_at)"
                " VALUES (%s, false, 'active', '[]', 0, now(), now())",
                (LINE,),
            )
            # Secondary indexes built once over all the rows: much faster than row by row.
            indexes = [
                (str(row[0]), str(row[1]))
                for row in conn.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chats'"
                    " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
                )
            ]
            for index, _ in indexes:
                conn.execute(f"DROP INDEX {index}")
            conn.execute(_FILL, {"due": due, "chats": chats, "line": LINE})
            for _, definition in indexes:
                conn.execute(definition)
            conn.execute("VACUUM ANALYZE chats")
    except BaseException:
        drop_database(name)
        raise
    return name, time.perf_counter() - started


def _wal_lsn(url: str) -> str:
    """The server's WAL flushed so far (the pass's commits waited for their flush)."""
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def _wal_between(url: str, start: str, end: str) -> tuple[int, int]:
    """Bytes of WAL, and of full-page images in it, from ``start`` to ``end``."""
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT %s::pg_lsn - %s::pg_lsn, coalesce(sum(fpi_size), 0)"
            " FROM pg_get_wal_stats(%s::pg_lsn, %s::pg_lsn)",
            (end, start, start, end),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _wait_for_ledger_gauges(daemon: DaemonProcess) -> None:
    """Until the daemon has published its first ledger gauges: its start-up card check, whose
    gauge read scans the chats table (1.4 s at 10M chats), is over."""
    _wait_until(daemon, lambda: "share_scheduler_line_chats{" in _metrics(daemon))


def _metrics(daemon: DaemonProcess) -> str:
    return httpx.get(f"{daemon.base_url}/metrics").text


def _wait_until(daemon: DaemonProcess, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not done():
        if daemon.proc is not None and daemon.proc.poll() is not None:
            raise SystemExit(f"the daemon exited ({daemon.proc.returncode}): {daemon.log_path}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not get there in {TIMEOUT_SECONDS} s")
        time.sleep(0.1)


def _make_due(url: str, old: list[str], new: list[str], at: datetime) -> None:
    """The chats ``old`` as before they were shared, renamed ``new``, due at ``at``. Their
    share attempts go first (they hold their ids)."""
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        conn.execute("DELETE FROM share_attempts WHERE chat_id = ANY(%s)", (old,))
        conn.execute(_DUE_AGAIN, {"old": old, "new": new, "next": at})


def daemon_run(sim: SimProcess, url: str, names: list[str]) -> tuple[RunResult, list[str]]:
    """The daemon over the ledger; its figures (due query and claim left at 0) and the new
    names of the chats ``names``.

    Start-up: the chats ``names``, renamed to fresh simulator chats and due first, from the
    process start to the first share call. The pass: once those are shared and the start-up
    card check is over (its gauge read, a scan of the chats, would run beside the pass), the
    same chats under fresh names again, due now: the span of their shares, the daemon's CPU
    and the server's WAL meanwhile."""
    count = len(names)
    first = seed(sim, count)
    _make_due(url, names, first, clock.now() - timedelta(30))
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    daemon = prepare_daemon(sim, url, workdir, concurrency=CONCURRENCY)
    before = applied_shares(sim)
    started = time.time()
    daemon.start(timeout=120)
    assert daemon.proc is not None
    pid = daemon.proc.pid
    try:
        # The CPU it took to start, read as its first shares land (within one poll).
        _wait_until(daemon, lambda: applied_shares(sim) > before)
        startup_cpu = cpu_seconds(pid)
        _wait_until(daemon, lambda: applied_shares(sim) >= before + count)
        _wait_for_ledger_gauges(daemon)
        second = seed(sim, count)
        wal_start = _wal_lsn(url)
        cpu_start = cpu_seconds(pid)
        _make_due(url, first, second, clock.now() - timedelta(30))
        _wait_until(daemon, lambda: applied_shares(sim) >= before + 2 * count)
        pass_cpu = cpu_seconds(pid) - cpu_start
        wal_bytes, fpi_bytes = _wal_between(url, wal_start, _wal_lsn(url))
        rss = vm_hwm_mb(pid)
    finally:
        daemon.stop(timeout=120)
    start_log, pass_log = share_log(sim, first), share_log(sim, second)
    start_log.check_once("share-scheduler")
    pass_log.check_once("share-scheduler")
    _make_due(url, second, second, clock.now())
    result = RunResult(
        due_query_ms=0.0,
        claim_ms=0.0,
        first_claim_ms=0.0,
        pass_ms_per_chat=pass_log.span_seconds * 1000 / count,
        pass_cpu_ms_per_chat=pass_cpu * 1000 / count,
        startup_seconds=start_log.first_call - started,
        startup_cpu_seconds=startup_cpu,
        peak_rss_mb=rss,
        wal_kb_per_chat=wal_bytes / 1024 / count,
        fpi_kb_per_chat=fpi_bytes / 1024 / count,
    )
    return result, second


def run_once(
    sim: SimProcess, url: str, names: list[str], repeats: int
) -> tuple[RunResult, list[str]]:
    timings = asyncio.run(measure(url, repeats, BATCH))
    result, names = daemon_run(sim, url, names)
    return (
        replace(
            result,
            due_query_ms=median(timings.queries) * 1000,
            claim_ms=median(timings.claims) * 1000,
            first_claim_ms=timings.claims[0] * 1000,
        ),
        names,
    )


METRICS = (
    ("due query ms", "due_query_ms"),
    ("claim ms", "claim_ms"),
    ("first claim ms", "first_claim_ms"),
    ("pass ms/due chat", "pass_ms_per_chat"),
    ("pass CPU ms/due chat", "pass_cpu_ms_per_chat"),
    ("start-up s", "startup_seconds"),
    ("start-up CPU s", "startup_cpu_seconds"),
    ("peak RSS MB", "peak_rss_mb"),
    # Not targets, shown to explain the others: the server's WAL during the pass (PostgreSQL
    # logs each index page whole at its first change after a checkpoint, and a larger
    # ledger's changes fall on more distinct pages).
    ("WAL KB/due chat", "wal_kb_per_chat"),
    ("full-page image KB/due chat", "fpi_kb_per_chat"),
)
# Not targets either: the run's first claim (already in the median of the claims), which
# finds its chats as the daemon left them, on pages not yet changed since a checkpoint.
EXPLAINING = {"first_claim_ms", "wal_kb_per_chat", "fpi_kb_per_chat"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", default="100000,10000000", help="ledger sizes, smallest first")
    parser.add_argument("--due-percent", type=float, default=1.0)
    parser.add_argument("--pass-chats", type=int, default=1000, help="chats the daemon shares")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="claims timed per run")
    parser.add_argument("--keep", action="store_true", help="keep the templates for a re-run")
    args = parser.parse_args()
    sizes = [int(v) for v in args.chats.split(",")]
    # Never fewer due than the daemon is to share.
    dues = {size: max(int(size * args.due_percent / 100), args.pass_chats) for size in sizes}
    templates: dict[int, str] = {}
    built: list[list[object]] = []
    results: dict[int, list[RunResult]] = {size: [] for size in sizes}
    with ExitStack() as stack:
        for size in sizes:
            templates[size], seconds = build_template(size, dues[size], args.keep)
            built.append([size, dues[size], templates[size], seconds or "reused"])
            if not args.keep:
                stack.callback(drop_database, templates[size])
        urls = {size: stack.enter_context(pg_database(templates[size])) for size in sizes}
        sim = stack.enter_context(simulator())
        # The template's due chats, first by name: the ones the daemon shares.
        names = {size: [f"due-{i:09d}" for i in range(args.pass_chats)] for size in sizes}
        for run in range(args.runs):
            order = sizes if run % 2 == 0 else sizes[::-1]
            for size in order:
                result, names[size] = run_once(sim, urls[size], names[size], args.repeats)
                results[size].append(result)
    table("templates", ["chats", "due", "database", "build s"], built)

    def med(size: int, attr: str) -> float:
        return median([getattr(r, attr) for r in results[size]])

    small, large = sizes[0], sizes[-1]
    rows = [[size, dues[size], *(med(size, attr) for _, attr in METRICS)] for size in sizes]
    ratios = [
        med(large, attr) / med(small, attr) if med(small, attr) else float("nan")
        for _, attr in METRICS
    ]
    rows.append([f"{large} / {small}", "-", *ratios])
    table(
        f"ledger size: due query and claim of {BATCH}, daemon sharing {args.pass_chats} chats"
        f" (concurrency {CONCURRENCY}, zero latency), PostgreSQL, median of {args.runs}",
        ["chats", "due", *(label for label, _ in METRICS)],
        rows,
    )
    over = [
        label
        for (label, attr), ratio in zip(METRICS, ratios, strict=True)
        if ratio > RATIO_TARGET and attr not in EXPLAINING
    ]
    rss, startup = med(large, "peak_rss_mb"), med(large, "startup_seconds")
    print(
        f"\nsummary: {large} / {small} chats: "
        + ", ".join(
            f"{label} x{ratio:.2f}" for (label, _), ratio in zip(METRICS, ratios, strict=True)
        )
        + f"; at {large}: peak RSS {rss:.0f} MB (target < {RSS_TARGET_MB}),"
        f" start-up {startup:.2f} s (target < {STARTUP_TARGET_S:g});"
        f" target ratios above {RATIO_TARGET}: {', '.join(over) or 'none'}"
    )


if __name__ == "__main__":
    main()
