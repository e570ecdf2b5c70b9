"""Share pass overhead: the daemon's pass against a bare httpx loop making the same calls.

    python -m bench.share_pass [--chats 2000] [--concurrency 16] [--runs 3]

All run against the same simulator process (zero latency) at the same concurrency. The
bare loop is the client side's limit: httpx.AsyncClient only POSTing. The pass also selects,
claims (intent rows committed before each call), decides and records every outcome. Efficiency
is bare time / pass time (1.0 = no overhead), per ledger, median of the runs. The daemon's own
client alone (no ledger) is shown too: it sends straight to httpx's connection pools, so it
is cheaper than the bare loop, and pass time / client-alone time is what the ledger work costs.
"sim busy" is the simulator's CPU time per second of each contender's run (1.0 = one core
saturated): well under 1.0, the simulator is not what limits the figures. Its ceiling (calls
it serves per second of CPU) is printed with the summary.
"""

from __future__ import annotations

import argparse
import asyncio

import httpx

from bench.common import (
    TOKEN,
    Timer,
    cpu_seconds,
    daemon_logging,
    fill_ledger,
    ledger_url,
    median,
    seed,
    simulator,
    table,
    timed_share_pass,
)
from scheduler import clock
from scheduler.config import Secret
from scheduler.linq.client import LANE_CONNECTIONS, LinqClient


async def bare_loop(api_base: str, ids: list[str], concurrency: int) -> float:
    """Only the POSTs, over the same pool layout the client uses (lanes of 4 connections)."""
    lanes = max(1, -(-concurrency // LANE_CONNECTIONS))
    per_lane = -(-concurrency // lanes)
    limits = httpx.Limits(max_connections=per_lane, max_keepalive_connections=per_lane)
    clients = [
        httpx.AsyncClient(
            base_url=api_base, headers={"Authorization": f"Bearer {TOKEN}"}, limits=limits
        )
        for _ in range(lanes)
    ]
    queue = list(ids)

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            chat_id = queue.pop()
            resp = await client.post(f"/v3/chats/{chat_id}/share_contact_card")
            resp.raise_for_status()

    try:
        with Timer() as t:
            await asyncio.gather(*(worker(clients[i % lanes]) for i in range(concurrency)))
    finally:
        for client in clients:
            await client.aclose()
    return t.seconds


async def client_loop(api_base: str, ids: list[str], concurrency: int) -> float:
    """The daemon's own Linq client alone: the same calls with no ledger work at all."""
    client = LinqClient(api_base, Secret(TOKEN, "bench"), max_connections=concurrency)
    queue = list(ids)

    async def worker() -> None:
        while queue:
            await client.share_contact_card(queue.pop())

    try:
        with Timer() as t:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.aclose()
    return t.seconds


async def daemon_pass(url: str, api_base: str, concurrency: int) -> tuple[float, int]:
    client = LinqClient(api_base, Secret(TOKEN, "bench"), max_connections=concurrency)
    seconds, report = await timed_share_pass(url, client, concurrency)
    return seconds, report.outcomes.get("shared", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    kinds = args.databases.split(",")
    rows = []
    summary = []
    daemon_logging()
    with simulator() as sim:
        per_run = args.chats
        ids = seed(sim, per_run * args.runs * (2 + len(kinds)))
        chunks = [ids[i : i + per_run] for i in range(0, len(ids), per_run)]
        times: dict[str, list[float]] = {name: [] for name in ("bare", "client", *kinds)}
        busy: dict[str, list[float]] = {name: [] for name in times}

        def timed(name: str, seconds: float, cpu_before: float) -> None:
            times[name].append(seconds)
            busy[name].append((cpu_seconds(sim.proc.pid) - cpu_before) / seconds)

        for run in range(args.runs):
            # Interleave the contenders so that machine noise hits all of them alike.
            cpu = cpu_seconds(sim.proc.pid)
            seconds = asyncio.run(bare_loop(sim.api_base, chunks.pop(), args.concurrency))
            timed("bare", seconds, cpu)
            cpu = cpu_seconds(sim.proc.pid)
            seconds = asyncio.run(client_loop(sim.api_base, chunks.pop(), args.concurrency))
            timed("client", seconds, cpu)
            for kind in kinds:
                with ledger_url(kind) as url:
                    chunk = chunks.pop()
                    fill_ledger(url, chunk, set(chunk), clock.now())
                    cpu = cpu_seconds(sim.proc.pid)
                    seconds, shared = asyncio.run(daemon_pass(url, sim.api_base, args.concurrency))
                    if shared != per_run:
                        raise SystemExit(f"run {run} on {kind}: shared {shared} of {per_run}")
                    timed(kind, seconds, cpu)
        bare = median(times["bare"])
        rows.append(["bare httpx loop", "-", bare, per_run / bare, 1.0, median(busy["bare"])])
        alone = median(times["client"])
        rows.append(
            ["linq client alone", "-", alone, per_run / alone, bare / alone, median(busy["client"])]
        )
        for kind in kinds:
            t = median(times[kind])
            rows.append(["share pass", kind, t, per_run / t, bare / t, median(busy[kind])])
            summary.append(f"{kind} {bare / t:.2f} (of the client alone: {alone / t:.2f})")
        busiest = max(max(values) for values in busy.values())
        # Calls the simulator serves per second of its CPU: its ceiling on one core. A tiny run
        # can finish inside one tick of the process CPU clock, which then reads 0: unknown.
        client_busy = median(busy["client"])
        ceiling = f"{per_run / alone / client_busy:.0f}" if client_busy > 0 else "unknown"
    table(
        f"share pass vs bare loop: {args.chats} calls, concurrency {args.concurrency}, "
        f"zero latency, median of {args.runs}",
        ["contender", "ledger", "seconds", "calls/s", "efficiency", "sim busy"],
        rows,
    )
    print(
        f"\nsummary: share pass efficiency (bare loop = 1.0): {', '.join(summary)};"
        f" simulator at most {busiest:.2f} of a core busy, ceiling about {ceiling} calls/s"
    )


if __name__ == "__main__":
    main()
