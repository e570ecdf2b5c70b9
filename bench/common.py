"""Shared set-up for benchmarks: simulator process, ledgers of any size, reporting."""

from __future__ import annotations

import asyncio
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from scheduler import clock
from scheduler.config import SharePassConfig
from scheduler.core.rule import Policy
from scheduler.daemon.lifecycle import settle_heap
from scheduler.demo.processes import (
    DaemonProcess,
    SimProcess,
    base_env,
    free_port,
    upgrade_db,
    write_schedule,
)
from scheduler.ledger import schema
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.linq.client import LinqClient
from scheduler.logs import configure_logging, register_secrets
from scheduler.share.share_pass import PassReport, SharePass

LINE = "+14155550100"
TOKEN = "bench-token"
PG_DSN = os.environ.get("SHARE_SCHEDULER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def daemon_logging() -> None:
    """Log as the daemon does by default (info, JSON lines, secrets redacted), to /dev/null:
    a pass pays for its share.* events as it would in production."""
    configure_logging("info", "json", stream=open(os.devnull, "w"))  # noqa: SIM115
    register_secrets([TOKEN])


def open_policy(now: datetime) -> Policy:
    """A UTC window around ``now``, so every eligible chat is due right away."""
    start = (now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    return Policy(
        timezone="UTC",
        window_start=start,
        window_end=end,
        min_interval=timedelta(hours=12),
        stop_after_inactive_days=None,
    )


@contextmanager
def simulator(latency_ms: float = 0, **kwargs: Any) -> Iterator[SimProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    sim = SimProcess.start(
        workdir, env=base_env(), token=TOKEN, activation_delay=0, latency_ms=latency_ms, **kwargs
    )
    try:
        httpx.post(
            f"{sim.api_base}/v3/contact_card",
            json={"phone_number": LINE, "first_name": "Bench"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).raise_for_status()
        yield sim
    finally:
        sim.stop()


def seed(sim: SimProcess, count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        batch = min(50_000, count - len(ids))
        ids += sim.control("POST", "seed", json={"from": LINE, "count": batch, "webhooks": False})[
            "chat_ids"
        ]
    return ids


@contextmanager
def ledger_url(kind: str) -> Iterator[str]:
    """A fresh, migrated ledger of the given kind, removed afterwards."""
    if kind == "sqlite":
        workdir = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
        url = f"sqlite:///{workdir / 'ledger.db'}"
        migrate(url)
        yield url
        return
    with pg_database() as url:
        migrate(url)
        yield url


@contextmanager
def pg_database(template: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database (its URL), dropped afterwards: empty, or a copy of the
    ``template`` database."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    # A file copy: the default strategy would write a large template through the WAL.
    source = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}{source}")
    try:
        yield PG_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def migrate(url: str) -> None:
    """Bring the ledger at ``url`` to the schema's head revision."""

    async def run() -> None:
        ledger = Ledger(create_engine(url, pool_size=1))
        try:
            await schema.upgrade(ledger)
        finally:
            await ledger.dispose()

    asyncio.run(run())


def _rows(ids: Sequence[str], due: set[str], now: datetime) -> Iterator[tuple[Any, ...]]:
    first = now - timedelta(days=1)
    later = now + timedelta(days=1)
    shared = now - timedelta(seconds=60)
    for i, chat_id in enumerate(ids):
        # Chats that are not due were shared a minute ago: the rule agrees they are not due.
        is_due = chat_id in due
        yield (
            chat_id,
            LINE,
            f"+1212555{i % 10000:04d}",
            False,
            "iMessage",
            first,
            first,
            0 if is_due else 1,
            "active",
            0,
            shared if is_due else later,
            None if is_due else shared,
            first,
            first,
        )


_COLUMNS = (
    "chat_id",
    "line",
    "recipients",
    "is_group",
    "service",
    "first_outbound_at",
    "last_outbound_at",
    "share_count",
    "status",
    "consecutive_failures",
    "next_share_at",
    "last_shared_at",
    "created_at",
    "updated_at",
)


def fill_ledger(url: str, ids: Sequence[str], due: set[str], now: datetime) -> None:
    """Bulk-load chats (and an active line) straight through the driver: fast at 1M rows."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        with sqlite3.connect(path) as db:
            stamp = now.astimezone(UTC).replace(tzinfo=None).strftime(_SQLITE_TIME)
            db.execute(
                "INSERT INTO lines (number, paused, card_state, card_write_log,"
                " card_write_failures, created_at, updated_at)"
                " VALUES (?, 0, 'active', '[]', 0, ?, ?)",
                (LINE, stamp, stamp),
            )

            def conv(row: tuple[Any, ...]) -> tuple[Any, ...]:
                return tuple(
                    v.astimezone(UTC).replace(tzinfo=None).strftime(_SQLITE_TIME)
                    if isinstance(v, datetime)
                    else v
                    for v in row
                )

            db.executemany(
                f"INSERT INTO chats ({', '.join(_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(_COLUMNS))})",
                (conv(r) for r in _rows(ids, due, now)),
            )
        return
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO lines (number, paused, card_state, card_write_log, card_write_failures,"
            " created_at, updated_at) VALUES (%s, false, 'active', '[]', 0, %s, %s)",
            (LINE, now, now),
        )
        with conn.cursor().copy(f"COPY chats ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for row in _rows(ids, due, now):
                copy.write_row(row)
        conn.execute("ANALYZE chats")


def ledger_sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    """Run one statement on a ledger from outside the daemon (own connection, autocommit);
    return its rows (none for a write)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1], timeout=30) as db:
            return list(db.execute(statement))
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return list(cursor.fetchall()) if cursor.description else []


def applied_shares(sim: SimProcess) -> int:
    """Shares the simulator has applied since it started, all chats together."""
    return int(sim.control("GET", "state")["counts"]["shares"])


@dataclass(frozen=True)
class ShareLog:
    """What the simulator saw of a set of chats: its shares log and its calls log."""

    shared_twice: int  # chats shared more than once on one day
    called_again: int  # chats called more than once
    missing: int  # chats never shared
    first_call: float  # epoch seconds
    span_seconds: float  # first to last share applied
    calls: int

    def check_once(self, contender: str) -> None:
        """Fail unless every chat was shared exactly once and called once. The simulator
        injects no faults in a benchmark, so a second call is a second share attempt (one
        within 5 minutes it refuses, which its shares log alone would not show)."""
        if self.shared_twice or self.called_again or self.missing:
            raise SystemExit(
                f"{contender}: {self.shared_twice} chats shared more than once,"
                f" {self.called_again} chats called more than once, {self.missing} never shared"
            )


def share_log(sim: SimProcess, chat_ids: Sequence[str]) -> ShareLog:
    wanted = set(chat_ids)
    shares = [s for s in sim.control("GET", "shares")["shares"] if s["chat_id"] in wanted]
    calls = [c for c in sim.control("GET", "calls")["calls"] if c["chat_id"] in wanted]
    applied = [(s["chat_id"], datetime.fromisoformat(s["at"])) for s in shares]
    per_chat_day = Counter((chat_id, at.date()) for chat_id, at in applied)
    called = Counter(c["chat_id"] for c in calls)
    at = sorted(when.timestamp() for _, when in applied)
    return ShareLog(
        shared_twice=len({chat_id for (chat_id, _), n in per_chat_day.items() if n > 1}),
        called_again=sum(1 for n in called.values() if n > 1),
        missing=len(wanted - {chat_id for chat_id, _ in applied}),
        first_call=min((datetime.fromisoformat(c["at"]).timestamp() for c in calls), default=0),
        # Millisecond timestamps: a toy run may apply every share within the same millisecond.
        span_seconds=max(at[-1] - at[0], 0.001) if at else 0.0,
        calls=len(calls),
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    # Fields after the command name (which may hold spaces): state first, utime and stime at 11, 12.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


# Runs the command and, at exit, records its own peak resident set (VmHWM). The rusage of
# a child is no good here: Linux carries the parent's resident set, copied at fork, over the
# exec into ru_maxrss, so a large parent would hide the child's own figure.
_RUN_AND_REPORT = """
import atexit, sys
from pathlib import Path

def _report(path=sys.argv[1]):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            Path(path).write_text(line.split()[1])

atexit.register(_report)
sys.argv = ["share-scheduler", *sys.argv[2:]]
from scheduler.cli import main
main()
"""


def peak_rss_of(args: list[str], report: Path) -> tuple[float, float]:
    """Run ``share-scheduler ARGS`` as its own process; return (peak RSS MiB, seconds)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_AND_REPORT, str(report), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} {args[1]} failed ({proc.returncode}): {proc.stderr}")
    return int(report.read_text()) / 1024, seconds


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def prepare_daemon(
    sim: SimProcess,
    url: str,
    workdir: Path,
    *,
    concurrency: int = 16,
    log_level: str = "warning",
    interval: str = "2s",
) -> DaemonProcess:
    """``share-scheduler run`` on the (migrated) ledger at ``url``, sharing through ``sim``, not
    started yet: a window open now, and the share pass unthrottled (``requests_per_second``
    far above what the simulator serves: the stock 20/s would be all that was measured)."""
    port = free_port()
    env = base_env(LINQ_API_KEY=TOKEN, LINQ_WEBHOOK_SECRET="bench-secret")
    now = datetime.now(UTC)
    config = write_schedule(
        workdir / "schedule.yaml",
        {
            "linq": {"base_url": sim.api_base},
            "database": {"url": url},
            "sharing": {
                "timezone": "UTC",
                "window": {
                    "start": (now - timedelta(hours=1)).strftime("%H:00"),
                    "end": (now + timedelta(hours=3)).strftime("%H:00"),
                },
                "stop_after_inactive_days": None,
            },
            "share_pass": {
                "interval": interval,
                "concurrency": concurrency,
                "batch_size": 500,
                "requests_per_second": 1e6,
            },
            "webhooks": {"listen": f"127.0.0.1:{port}"},
            "logging": {"level": log_level, "format": "json"},
            "lines": [{"number": LINE}],
        },
    )
    upgrade_db(config, env)
    return DaemonProcess(config, env, port, workdir / "daemon.log")


async def timed_share_pass(
    url: str, client: LinqClient, concurrency: int
) -> tuple[float, PassReport]:
    """One unthrottled share pass of the daemon's own code over the ledger at ``url`` with
    ``client``: its seconds and report. Closes the client and the ledger."""
    ledger = Ledger(create_engine(url, pool_size=4))
    config = SharePassConfig(
        concurrency=concurrency,
        requests_per_second=1e9,
        batch_size=500,
        lease=timedelta(minutes=10),
    )
    share_pass = SharePass(
        ledger=ledger,
        client=client,
        config=config,
        policy=open_policy(clock.now()),
        instance="bench",
    )
    settle_heap()  # as the daemon does once started
    try:
        with Timer() as t:
            report = await share_pass.run()
    finally:
        await client.aclose()
        await ledger.dispose()
    return t.seconds, report
