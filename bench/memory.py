"""Memory: peak RSS of the daemon process during a pass over a large ledger, against the floor
of the libraries it runs on; and its start-up to the first claim.

    python -m bench.memory [--chats 1000000] [--due-percent 1] [--database sqlite] [--runs 1]

The ledger is bulk-loaded, a real daemon runs against the simulator (zero latency) until the
due chats are shared, and its peak resident set (VmHWM) is read from /proc. The floor is the
peak resident set of a bare interpreter that only imports the libraries a pass runs on for that
database (SQLAlchemy's asyncio engine and the driver, httpx, uvicorn, Starlette, APScheduler,
pydantic, structlog, prometheus_client), as the daemon imports them: nothing of share-scheduler
can go below it. Beside it, "imports": an interpreter that imports what ``share-scheduler run``
imports (its command line, the daemon's modules, the libraries as it uses them) and runs
nothing; the daemon's peak over that is what running holds. Start-up is from the process
start to the first share call the simulator saw (wall), and the daemon's CPU seconds when its
first share lands (read within one poll).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import (
    applied_shares,
    cpu_seconds,
    fill_ledger,
    ledger_url,
    median,
    prepare_daemon,
    seed,
    share_log,
    simulator,
    table,
    vm_hwm_mb,
)
from scheduler import clock

# What a pass runs on, whatever the database; then each database's driver and dialect.
PASS_LIBRARIES = (
    "sqlalchemy.ext.asyncio",
    "httpx",
    "uvicorn",
    "starlette.applications",
    "apscheduler.schedulers.asyncio",
    "pydantic",
    "structlog",
    "prometheus_client",
)
DRIVERS = {
    "sqlite": ("aiosqlite", "sqlalchemy.dialects.sqlite.aiosqlite"),
    "postgresql": ("psycopg", "sqlalchemy.dialects.postgresql.psycopg"),
}

# rich and pygments hidden as the daemon hides them from structlog and httpx
# (scheduler/cli/run_cmd.py); the peak resident set once the imports are done.
_FLOOR = """
import importlib, sys
sys.modules.update(rich=None, pygments=None)
for name in sys.argv[1:]:
    importlib.import_module(name)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) / 1024)
"""


# What ``share-scheduler run`` imports before it does anything: its command line, the
# daemon's modules and, through them, every library it uses; then its loop and its driver.
_IMPORTS = """
import importlib, sys
from scheduler.cli import app
from scheduler.cli.run_cmd import _import_without_unused_extras
_import_without_unused_extras()
for name in sys.argv[1:]:
    importlib.import_module(name)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) / 1024)
"""


def _peak_after(script: str, modules: tuple[str, ...]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", script, *modules], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def floor_mb(database: str) -> float:
    """Peak RSS (MB) of an interpreter that imports only the libraries a pass runs on."""
    return _peak_after(_FLOOR, (*PASS_LIBRARIES, *DRIVERS[database]))


def imports_mb(database: str) -> float:
    """Peak RSS (MB) of an interpreter that imports what the daemon imports, and runs nothing:
    the libraries as the daemon uses them (pydantic's validators, typer, YAML...) and its own
    modules. What a running daemon holds above it is its data."""
    return _peak_after(_IMPORTS, ("scheduler.daemon", "uvloop", *DRIVERS[database]))


def one_run(chats: int, due_count: int, database: str) -> list[float]:
    """One daemon over a fresh ledger: pass s, start-up s, start-up CPU s, RSS at start, peak."""
    with simulator() as sim, ledger_url(database) as url:
        due_ids = seed(sim, due_count)
        others = [f"idle-{uuid.UUID(int=i).hex}" for i in range(chats - due_count)]
        fill_ledger(url, due_ids + others, set(due_ids), clock.now())
        workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
        daemon = prepare_daemon(sim, url, workdir)
        started = time.time()
        daemon.start()
        assert daemon.proc is not None
        idle_rss = vm_hwm_mb(daemon.proc.pid)
        t0 = time.monotonic()
        startup_cpu = 0.0
        while (shared := applied_shares(sim)) < due_count:
            if not startup_cpu and shared:
                startup_cpu = cpu_seconds(daemon.proc.pid)
            if time.monotonic() - t0 > 1800:
                raise SystemExit("the pass did not finish in 30 minutes")
            time.sleep(0.02 if not startup_cpu else 0.5)
        seconds = time.monotonic() - t0
        peak = vm_hwm_mb(daemon.proc.pid)
        # A small pass may be over before the first poll.
        startup_cpu = startup_cpu or cpu_seconds(daemon.proc.pid)
        daemon.stop()
        log = share_log(sim, due_ids)
    log.check_once("share-scheduler")
    return [seconds, log.first_call - started, startup_cpu, idle_rss, peak]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=1_000_000)
    parser.add_argument("--due-percent", type=float, default=1.0)
    parser.add_argument("--database", default="sqlite", choices=sorted(DRIVERS))
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    due_count = max(1, int(args.chats * args.due_percent / 100))
    floor = floor_mb(args.database)
    imports = imports_mb(args.database)
    rows = []
    for _ in range(args.runs):
        figures = one_run(args.chats, due_count, args.database)
        rows.append(
            [
                args.chats,
                due_count,
                *figures,
                floor,
                figures[-1] / floor,
                imports,
                figures[-1] - imports,
            ]
        )
    table(
        f"daemon memory: {args.chats} chats, {due_count} due, {args.database}",
        [
            "chats",
            "shared",
            "pass s",
            "start-up s",
            "start-up CPU s",
            "RSS at start MB",
            "peak RSS MB",
            "floor MB",
            "peak / floor",
            "imports MB",
            "peak - imports MB",
        ],
        rows,
    )
    peak = median([row[6] for row in rows])
    startup = median([row[3] for row in rows])
    startup_cpu = median([row[4] for row in rows])
    print(
        f"\nsummary: daemon peak RSS {peak:.0f} MB with a {args.chats}-chat ledger"
        f" ({peak / floor:.2f} x the {floor:.0f} MB its libraries alone take; its imports"
        f" alone, its own modules and the libraries as it uses them, {imports:.0f} MB);"
        f" start-up to the first claim {startup:.2f} s ({startup_cpu:.2f} s CPU)"
        + (f", medians of {args.runs} runs" if args.runs > 1 else "")
    )


if __name__ == "__main__":
    main()
