"""Crash safety: daemons killed with SIGKILL at random moments while they share.

    python -m bench.crash [--kills 20] [--chats 6000] [--latency-ms 20] [--databases ...]

Against the simulator (real processes over loopback): one daemon on SQLite, three replicas on
PostgreSQL. While due chats remain, a random daemon is killed (SIGKILL) at a random moment and
started again at once. Afterwards the survivors settle every claim the kills left open (past
the lease they are resolved as ambiguous: counted as shared, never sent again). Printed per
ledger:

- double shares: chats the simulator saw shared twice on the day (must be 0);
- stranded: chats neither shared nor counted as shared once the daemons settle (must be 0);
- ambiguous per kill: claims resolved as ambiguous, per kill;
- missed per kill: chats counted as shared that the simulator never saw shared (a missed day).

Only kills made while due chats remained count ("kills"); later ones would find nothing to do.
"""

from __future__ import annotations

import argparse
import random
import signal
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import TOKEN, fill_ledger, ledger_sql, ledger_url, seed, simulator, table
from scheduler.demo.processes import DaemonProcess, SimProcess, base_env, free_port, write_schedule

LEASE_SECONDS = 4


@dataclass
class Outcome:
    ledger: str
    replicas: int
    kills: int
    double_shares: int
    stranded: int
    ambiguous: int
    missed: int

    @property
    def ambiguous_per_kill(self) -> float:
        return self.ambiguous / self.kills if self.kills else 0.0

    @property
    def missed_per_kill(self) -> float:
        return self.missed / self.kills if self.kills else 0.0


def count(url: str, statement: str) -> int:
    return int(ledger_sql(url, statement)[0][0])


def schedule(sim: SimProcess, url: str, port: int, name: str, args: argparse.Namespace) -> Any:
    now = datetime.now(UTC)
    # A window around now: every chat is due until it is shared, and only once today.
    start = f"{(now.hour + 23) % 24:02d}:00"
    end = f"{(now.hour + 3) % 24:02d}:00"
    return {
        "instance_id": name,
        "linq": {"base_url": sim.api_base, "timeout": "1s"},
        "database": {"url": url, "pool_size": 4},
        "sharing": {
            "timezone": "UTC",
            "window": {"start": start, "end": end},
            "min_interval": "12h",
        },
        "share_pass": {
            "interval": "200ms",
            "concurrency": args.concurrency,
            "batch_size": args.batch_size,
            "requests_per_second": 10_000,
            "lease": f"{LEASE_SECONDS}s",
            "max_tries": 1,
            "retry_backoff": "100ms",
            "retry_backoff_max": "1s",
            "shutdown_grace": "5s",
        },
        "cards": {"check_interval": "1h"},
        "backfill": {"enabled": False},
        "webhooks": {"listen": f"127.0.0.1:{port}"},
        "logging": {"level": "warning", "format": "json"},
    }


def _kill_all(daemons: list[DaemonProcess]) -> None:
    for daemon in daemons:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()


def run_ledger(kind: str, replicas: int, args: argparse.Namespace, rng: random.Random) -> Outcome:
    workdir = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    env = base_env(LINQ_API_KEY=TOKEN, LINQ_WEBHOOK_SECRET="bench-crash-webhook-secret")
    with ExitStack() as stack:
        sim = stack.enter_context(simulator(latency_ms=args.latency_ms))
        url = stack.enter_context(ledger_url(kind))
        # Enough work for every replica to be busy at each kill.
        ids = seed(sim, args.chats * replicas)
        fill_ledger(url, ids, set(ids), datetime.now(UTC))
        daemons = []
        for n in range(replicas):
            port = free_port()
            config = write_schedule(workdir / f"d{n}.yaml", schedule(sim, url, port, f"d{n}", args))
            daemons.append(DaemonProcess(config, env, port, workdir / f"d{n}.log"))
        stack.callback(_kill_all, daemons)
        for daemon in daemons:
            daemon.start()
        kills = 0
        unshared = "SELECT count(*) FROM chats WHERE last_shared_at IS NULL"
        while kills < args.kills and count(url, unshared) > 0:
            time.sleep(rng.uniform(0.05, args.max_gap))
            victim = rng.choice(daemons)
            victim.signal(signal.SIGKILL)
            victim.wait()
            kills += 1
            victim.start()
        # Past the lease, the survivors resolve what the kills left open.
        deadline = time.monotonic() + LEASE_SECONDS + 120
        while time.monotonic() < deadline:
            open_claims = count(
                url, "SELECT count(*) FROM chats WHERE claim_attempt_id IS NOT NULL"
            )
            if open_claims == 0 and count(url, unshared) == 0:
                break
            time.sleep(0.2)
        for daemon in daemons:
            daemon.stop()
        shares = Counter(s["chat_id"] for s in sim.control("GET", "shares")["shares"])
        counted = {
            row[0] for row in ledger_sql(url, "SELECT chat_id FROM chats WHERE share_count > 0")
        }
        ambiguous = count(url, "SELECT count(*) FROM share_attempts WHERE outcome = 'ambiguous'")
        return Outcome(
            ledger=kind,
            replicas=replicas,
            kills=kills,
            double_shares=sum(1 for n in shares.values() if n > 1),
            stranded=count(url, unshared),
            ambiguous=ambiguous,
            missed=len(counted - set(shares)),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--chats", type=int, default=6000, help="per daemon")
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=3, help="daemons on PostgreSQL")
    parser.add_argument("--max-gap", type=float, default=1.0, help="most seconds between kills")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed_value = args.seed if args.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed_value)
    results = []
    for kind in args.databases.split(","):
        results.append(run_ledger(kind, 1 if kind == "sqlite" else args.replicas, args, rng))
    table(
        f"SIGKILL at random moments: {args.chats} chats per daemon, "
        f"concurrency {args.concurrency}, "
        f"batch {args.batch_size}, simulator latency {args.latency_ms:g} ms, seed {seed_value}",
        [
            "ledger",
            "replicas",
            "kills",
            "double shares",
            "stranded",
            "ambiguous",
            "per kill",
            "missed",
            "per kill",
        ],
        [
            (
                r.ledger,
                r.replicas,
                r.kills,
                r.double_shares,
                r.stranded,
                r.ambiguous,
                r.ambiguous_per_kill,
                r.missed,
                r.missed_per_kill,
            )
            for r in results
        ],
    )
    parts = [
        f"{r.ledger} x{r.replicas}: {r.kills} kills, double shares {r.double_shares}, "
        f"stranded {r.stranded}, ambiguous/kill {r.ambiguous_per_kill:.2f}, "
        f"missed/kill {r.missed_per_kill:.2f}"
        for r in results
    ]
    print(f"\nsummary: {'; '.join(parts)}")
    if any(r.double_shares or r.stranded for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
