"""Webhook ingest: signed message.sent events posted to a real daemon by a separate process.

    python -m bench.webhook_ingest [--events 5000] [--connections 16]
                                   [--databases sqlite,postgresql]
                                   [--direction outbound|inbound|both]

The load process pre-builds every signed request and replays them over keep-alive
connections with a minimal HTTP/1.1 client, so that its own cost stays small next to the
daemon's. Reports sustained events/second and p50/p99 response times. ``inbound`` posts
``message.received`` from one recipient per chat (each batch also records what it says of
its recipients, account-wide); ``both`` runs the two and prints inbound/outbound as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import LINE, TOKEN, ledger_url, simulator, table
from scheduler.demo.processes import DaemonProcess, base_env, free_port, upgrade_db, write_schedule
from scheduler.ingest.signing import sign

SECRET = "bench-webhook-secret"


def _requests(count: int, port: int, inbound: bool = False) -> list[bytes]:
    out = []
    event_type = "message.received" if inbound else "message.sent"
    stamp = int(time.time())
    sent = datetime.now(UTC).isoformat()
    for i in range(count):
        body = json.dumps(
            {
                "api_version": "v3",
                "event_id": uuid.uuid4().hex,
                "event_type": event_type,
                "created_at": sent,
                "webhook_version": "2026-02-03",
                "data": {
                    "id": f"msg-{i}",
                    "direction": "inbound" if inbound else "outbound",
                    "service": "iMessage",
                    "sent_at": sent,
                    "chat": {
                        "id": f"chat-{i % (count // 2 or 1)}",
                        "is_group": False,
                        "owner_handle": {"handle": LINE, "is_me": True},
                        "health_status": {"status": "HEALTHY"},
                    },
                    "sender_handle": (
                        {"handle": f"+1212{5550000 + i % (count // 2 or 1):07d}", "is_me": False}
                        if inbound
                        else {"handle": LINE, "is_me": True}
                    ),
                    "parts": [{"type": "text", "value": "hello"}],
                },
            }
        ).encode()
        head = (
            f"POST /webhooks/linq HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Webhook-Event: {event_type}\r\nX-Webhook-Timestamp: {stamp}\r\n"
            f"X-Webhook-Signature: {sign(SECRET, stamp, body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


async def _load(
    port: int, requests: list[bytes], connections: int
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(requests))

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            request = queue.pop()
            t0 = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if b" 200 " not in status_line:
                errors += 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return time.perf_counter() - t0, latencies, errors


def _load_process(port: int, count: int, connections: int, inbound: bool, out: Any) -> None:
    requests = _requests(count, port, inbound)
    out.send(asyncio.run(_load(port, requests, connections)))


def run_one(
    kind: str, events: int, connections: int, api_base: str, inbound: bool = False
) -> list[Any]:
    with ledger_url(kind) as url:
        workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        port = free_port()
        env = base_env(LINQ_API_KEY=TOKEN, LINQ_WEBHOOK_SECRET=SECRET)
        config = write_schedule(
            workdir / "schedule.yaml",
            {
                "linq": {"base_url": api_base},
                "database": {"url": url},
                "webhooks": {"listen": f"127.0.0.1:{port}"},
                "share_pass": {"interval": "1h"},
                "logging": {"level": "warning", "format": "json"},
            },
        )
        upgrade_db(config, env)
        daemon = DaemonProcess(config, env, port, workdir / "daemon.log")
        daemon.start()
        try:
            # A short warm-up, then the measured run, from a process of its own.
            for count in (200, events):
                parent, child = multiprocessing.Pipe()
                proc = multiprocessing.Process(
                    target=_load_process, args=(port, count, connections, inbound, child)
                )
                proc.start()
                seconds, latencies, errors = parent.recv()
                proc.join()
        finally:
            daemon.stop()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    direction = "inbound" if inbound else "outbound"
    return [kind, direction, events, connections, events / seconds, p50, p99, errors]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--direction", choices=["outbound", "inbound", "both"], default="outbound")
    args = parser.parse_args()
    directions = {"outbound": [False], "inbound": [True], "both": [False, True]}[args.direction]
    rows = []
    with simulator() as sim:
        for kind in args.databases.split(","):
            for inbound in directions:
                rows.append(run_one(kind, args.events, args.connections, sim.api_base, inbound))
    table(
        "webhook ingest: signed message.sent / message.received events (half repeat a chat)",
        ["ledger", "events", "direction", "connections", "events/s", "p50 ms", "p99 ms", "non-200"],
        [[r[0], r[2], r[1], *r[3:]] for r in rows],
    )
    parts = [f"{r[0]} {r[1]} {r[4]:.0f} events/s, p99 {r[6]:.1f} ms" for r in rows]
    if args.direction == "both":
        rates = {(r[0], r[1]): r[4] for r in rows}
        for kind in args.databases.split(","):
            ratio = rates[(kind, "inbound")] / rates[(kind, "outbound")]
            parts.append(f"{kind} inbound/outbound {ratio:.2f}")
    print("\nsummary: " + "; ".join(parts))


if __name__ == "__main__":
    main()
