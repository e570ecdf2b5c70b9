"""Latency-bound pass: N due chats, L ms simulated latency, concurrency C.

    python -m bench.latency_pass [--chats 20000] [--latency-ms 100] [--concurrency 32] [--runs 1]

With the API's latency dominating, the best any client can do is N x latency / C. The ratio
of the pass's wall time to that ideal is what the daemon adds (1.00 = nothing).
"""

from __future__ import annotations

import argparse
import asyncio

from bench.common import daemon_logging, fill_ledger, ledger_url, median, seed, simulator, table
from bench.share_pass import daemon_pass
from scheduler import clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--database", default="sqlite")
    args = parser.parse_args()
    daemon_logging()
    ideal = args.chats * args.latency_ms / 1000 / args.concurrency
    times = []
    with simulator(latency_ms=args.latency_ms) as sim:
        ids = seed(sim, args.chats * args.runs)
        for run in range(args.runs):
            chunk = ids[run * args.chats : (run + 1) * args.chats]
            with ledger_url(args.database) as url:
                fill_ledger(url, chunk, set(chunk), clock.now())
                seconds, shared = asyncio.run(daemon_pass(url, sim.api_base, args.concurrency))
            if shared != args.chats:
                raise SystemExit(f"run {run}: shared {shared} of {args.chats}")
            times.append(seconds)
    wall = median(times)
    table(
        f"latency-bound pass: {args.chats} chats, {args.latency_ms:.0f} ms latency, "
        f"concurrency {args.concurrency}, {args.database}",
        ["ideal s", "pass s (median)", "runs", "ratio"],
        [[ideal, wall, args.runs, wall / ideal]],
    )
    print(f"\nsummary: latency-bound pass at {wall / ideal:.3f} x the ideal N x latency / C")


if __name__ == "__main__":
    main()
