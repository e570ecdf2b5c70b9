"""Replicas: 1, 2 and 3 daemons sharing from one PostgreSQL ledger, side by side.

    python -m bench.replicas [--chats 4800] [--replicas 1,2,3] [--latency-ms 100]
                             [--concurrency 16] [--runs 3]

Each run: N fresh chats (all due) in a fresh, migrated PostgreSQL database; R real daemons
(``share-scheduler run``, each its own process and instance id, the same schedule) at a fixed
concurrency each, against one simulator process at the given latency. The chats are loaded
not due; once every daemon is up they all turn due in one statement, so no replica gets a
head start from starting first. Passes run every 200 ms and are unthrottled
(``requests_per_second`` 1e6: the stock 20/s is Linq's per-line pace, see README
"Performance").

Per replica count, medians of the runs: shares/s (N over the span from the first to the last
share the simulator applied), the ratio to one replica, time over the ideal N x latency /
(R x C), a share call as the daemons timed it (their ``share.succeeded`` log lines: the daemons
log at info, as shipped) against a worker's whole turn (claim, call, record: span x R x C / N;
the difference is time spent away from the call), the share of the chats the busiest and
idlest replica took, the CPU the daemons, their PostgreSQL backends and the simulator spent
per share. The simulator's logs must show
every chat shared once on the day and called once, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.common import (
    PG_DSN,
    applied_shares,
    cpu_seconds,
    fill_ledger,
    ledger_sql,
    ledger_url,
    median,
    prepare_daemon,
    seed,
    share_log,
    simulator,
    table,
)
from scheduler import clock
from scheduler.demo.processes import DaemonProcess, SimProcess

PASS_INTERVAL = "200ms"
# Enough for 3 replicas' start-up jobs (the first card check, the first empty passes) to end.
SETTLE_SECONDS = 2.0
TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class RunResult:
    shares_per_second: float
    span_seconds: float
    busiest_fraction: float  # of the chats, the replica that shared the most
    idlest_fraction: float
    daemon_cpu_ms_per_share: float
    postgres_cpu_ms_per_share: float
    sim_cpu_ms_per_share: float
    call_ms: float  # a share call, as the daemons timed it (median)
    cycle_ms: float  # a worker's turn: claim, call, record (span x replicas x concurrency / N)
    calls: int


def backend_pids(url: str) -> list[int]:
    """The server processes serving the ledger's database (the daemons' pooled connections)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return [int(row[0]) for row in rows]


def backends_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each server process still running (those that exited are left out)."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def wait_for_shares(
    sim: SimProcess, target: int, daemons: list[DaemonProcess], url: str
) -> dict[int, float]:
    """Until the simulator applied ``target`` more shares; meanwhile, the CPU seconds of every
    PostgreSQL backend of the ledger, last seen (backends may come and go with the pools)."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    seen: dict[int, float] = {}
    while applied_shares(sim) < target:
        for daemon in daemons:
            assert daemon.proc is not None
            if daemon.proc.poll() is not None:
                raise SystemExit(f"a daemon exited ({daemon.proc.returncode}): {daemon.log_path}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the replicas did not share every chat in {TIMEOUT_SECONDS} s")
        seen.update(backends_cpu(backend_pids(url)))
        time.sleep(0.25)
    seen.update(backends_cpu(list(seen)))
    return seen


def call_latencies(daemon: DaemonProcess) -> list[float]:
    """The latency of each share call the daemon logged (``share.succeeded``, at info)."""
    out = []
    for line in daemon.logs().splitlines():
        if '"share.succeeded"' in line:
            out.append(float(json.loads(line)["latency_ms"]))
    return out


def run_once(sim: SimProcess, replicas: int, chats: int, concurrency: int) -> RunResult:
    ids = seed(sim, chats)
    with ExitStack() as stack:
        url = stack.enter_context(ledger_url("postgresql"))
        fill_ledger(url, ids, set(ids), clock.now())
        ledger_sql(url, "UPDATE chats SET next_share_at = now() + interval '1 day'")
        daemons = [
            prepare_daemon(
                sim,
                url,
                Path(tempfile.mkdtemp(prefix=f"bench-replica-{n}-")),
                concurrency=concurrency,
                interval=PASS_INTERVAL,
                log_level="info",
            )
            for n in range(replicas)
        ]
        for daemon in daemons:
            daemon.start(timeout=120)
            stack.callback(daemon.stop, 120)
        time.sleep(SETTLE_SECONDS)
        if ledger_sql(url, "SELECT count(*) FROM share_attempts")[0][0]:
            raise SystemExit("a chat was claimed before it was due: the run would be void")
        target = applied_shares(sim) + chats
        pids = [d.proc.pid for d in daemons if d.proc is not None]
        daemon_cpu = sum(cpu_seconds(pid) for pid in pids)
        sim_cpu = cpu_seconds(sim.proc.pid)
        backends_before = backends_cpu(backend_pids(url))
        ledger_sql(url, "UPDATE chats SET next_share_at = now()")
        backends_after = wait_for_shares(sim, target, daemons, url)
        daemon_cpu = sum(cpu_seconds(pid) for pid in pids) - daemon_cpu
        sim_cpu = cpu_seconds(sim.proc.pid) - sim_cpu
        postgres_cpu = sum(
            seconds - backends_before.get(pid, 0.0) for pid, seconds in backends_after.items()
        )
        per_instance = [
            int(row[0])
            for row in ledger_sql(url, "SELECT count(*) FROM share_attempts GROUP BY instance")
        ]
    latencies = [ms for daemon in daemons for ms in call_latencies(daemon)]
    log = share_log(sim, ids)
    log.check_once(f"{replicas} replicas")
    # A replica that claimed nothing has no row: it counts as an idle one.
    per_instance += [0] * (replicas - len(per_instance))
    return RunResult(
        shares_per_second=chats / log.span_seconds,
        span_seconds=log.span_seconds,
        busiest_fraction=max(per_instance) / chats,
        idlest_fraction=min(per_instance) / chats,
        daemon_cpu_ms_per_share=daemon_cpu * 1000 / chats,
        postgres_cpu_ms_per_share=postgres_cpu * 1000 / chats,
        sim_cpu_ms_per_share=sim_cpu * 1000 / chats,
        call_ms=median(latencies) if latencies else 0.0,
        cycle_ms=log.span_seconds * 1000 * replicas * concurrency / chats,
        calls=log.calls,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=4800)
    parser.add_argument("--replicas", default="1,2,3", help="replica counts to compare")
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--concurrency", type=int, default=16, help="per replica")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = [int(v) for v in args.replicas.split(",")]
    results: dict[int, list[RunResult]] = {n: [] for n in counts}
    with simulator(latency_ms=args.latency_ms) as sim:
        for run in range(args.runs):
            # Rotate who goes first, so that machine noise hits every count alike.
            shift = run % len(counts)
            for n in counts[shift:] + counts[:shift]:
                results[n].append(run_once(sim, n, args.chats, args.concurrency))

    def med(n: int, attr: str) -> float:
        return median([getattr(r, attr) for r in results[n]])

    base = med(counts[0], "shares_per_second")
    rows: list[list[object]] = []
    parts: list[str] = []
    for n in counts:
        rate = med(n, "shares_per_second")
        ideal = args.chats * args.latency_ms / 1000 / (n * args.concurrency)
        calls = sum(r.calls for r in results[n])
        rows.append(
            [
                n,
                rate,
                rate / base,
                f"{med(n, 'span_seconds') / ideal:.3f}" if ideal else "-",
                med(n, "call_ms"),
                med(n, "cycle_ms"),
                med(n, "busiest_fraction"),
                med(n, "idlest_fraction"),
                med(n, "daemon_cpu_ms_per_share"),
                med(n, "postgres_cpu_ms_per_share"),
                med(n, "sim_cpu_ms_per_share"),
                f"0 ({calls} calls for {args.chats * args.runs} chats)",
            ]
        )
        parts.append(f"{n} x{rate / base:.2f} ({rate:.0f}/s)")
    table(
        f"replicas on one PostgreSQL: {args.chats} due chats, concurrency {args.concurrency}"
        f" per replica, simulator latency {args.latency_ms:g} ms, median of {args.runs}",
        [
            "replicas",
            "shares/s",
            f"ratio to {counts[0]}",
            "time/ideal",
            "call ms",
            "worker turn ms",
            "busiest",
            "idlest",
            "daemons CPU ms/share",
            "postgres CPU ms/share",
            "sim CPU ms/share",
            "double shares",
        ],
        rows,
    )
    print(
        f"\nsummary: shares/s by replicas, ratio to {counts[0]}: {', '.join(parts)};"
        " double shares 0"
    )


if __name__ == "__main__":
    main()
