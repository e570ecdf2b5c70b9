"""Memory: peak RSS of the daemon process during a pass over a large ledger.

    python -m bench.memory [--chats 1000000] [--due-percent 1] [--database sqlite]

The ledger is bulk-loaded, a real daemon runs against the simulator (zero latency) until the
due chats are shared, and its peak resident set (VmHWM) is read from /proc.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import fill_ledger, ledger_url, prepare_daemon, seed, simulator, table, vm_hwm_mb
from scheduler import clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=1_000_000)
    parser.add_argument("--due-percent", type=float, default=1.0)
    parser.add_argument("--database", default="sqlite")
    args = parser.parse_args()
    due_count = int(args.chats * args.due_percent / 100)
    with simulator() as sim, ledger_url(args.database) as url:
        due_ids = seed(sim, due_count)
        others = [f"idle-{uuid.UUID(int=i).hex}" for i in range(args.chats - due_count)]
        fill_ledger(url, due_ids + others, set(due_ids), clock.now())
        workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
        daemon = prepare_daemon(sim, url, workdir)
        daemon.start()
        assert daemon.proc is not None
        idle_rss = vm_hwm_mb(daemon.proc.pid)
        t0 = time.monotonic()
        while len(sim.control("GET", "shares")["shares"]) < due_count:
            if time.monotonic() - t0 > 1800:
                raise SystemExit("the pass did not finish in 30 minutes")
            time.sleep(1)
        seconds = time.monotonic() - t0
        peak = vm_hwm_mb(daemon.proc.pid)
        daemon.stop()
    table(
        f"daemon memory: {args.chats} chats, {due_count} due, {args.database}",
        ["chats", "shared", "pass s", "RSS at start MB", "peak RSS MB"],
        [[args.chats, due_count, seconds, idle_rss, peak]],
    )
    print(f"\nsummary: daemon peak RSS {peak:.0f} MB with a {args.chats}-chat ledger")


if __name__ == "__main__":
    main()
