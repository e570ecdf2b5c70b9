"""Webhook ingest: signed message.sent events posted to a real daemon by a separate process.

    python -m bench.webhook_ingest [--events 5000] [--connections 16] [--processes 1]
                                   [--databases sqlite,postgresql]
                                   [--schemes standard,legacy]
                                   [--direction outbound|inbound|both]

The load processes pre-build every signed request and replay them over keep-alive
connections with a minimal HTTP/1.1 client, so that their own cost stays small next to the
daemon's; ``--processes`` splits the connections over several of them, for when one load
process is the bottleneck. Besides the rate, the CPU time the daemon and the load processes
spent per event says which side limits it: a daemon whose CPU time per event times the rate
is well below one core is waiting (for the load, or for the database).
Reports sustained events/second and p50/p99 response times, per signature scheme
(Standard Webhooks, or the legacy X-Webhook-* headers), and the ratio of the two. ``inbound``
posts ``message.received`` from one recipient per chat (each batch also records what it says
of its recipients, account-wide); ``both`` runs the two and prints inbound/outbound.
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

from bench.common import LINE, TOKEN, cpu_seconds, ledger_url, simulator, table
from scheduler.demo.processes import DaemonProcess, base_env, free_port, upgrade_db, write_schedule
from scheduler.ingest.signing import (
    SignatureHeaders,
    SignatureVerdict,
    WebhookVerifier,
    sign,
    sign_standard,
    standard_webhook,
)

# A Standard Webhooks secret: it signs both schemes (the legacy one keyed with the whole text).
SECRET = "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtMDEyMzQ1Njc4OQ=="
SCHEMES = ("standard", "legacy")


def _signature_headers(scheme: str, event_id: str, event_type: str, stamp: int, body: bytes) -> str:
    if scheme == "standard":
        signature = sign_standard(standard_webhook(SECRET), event_id, stamp, body)
        return (
            f"webhook-id: {event_id}\r\nwebhook-timestamp: {stamp}\r\n"
            f"webhook-signature: {signature}\r\n"
        )
    return (
        f"X-Webhook-Event: {event_type}\r\nX-Webhook-Timestamp: {stamp}\r\n"
        f"X-Webhook-Signature: {sign(SECRET, stamp, body)}\r\n"
    )


def _requests(count: int, port: int, scheme: str, inbound: bool = False) -> list[bytes]:
    out = []
    event_type = "message.received" if inbound else "message.sent"
    stamp = int(time.time())
    sent = datetime.now(UTC).isoformat()
    for i in range(count):
        event_id = uuid.uuid4().hex
        body = json.dumps(
            {
                "api_version": "v3",
                "event_id": event_id,
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
            f"{_signature_headers(scheme, event_id, event_type, stamp, body)}\r\n"
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


def _load_process(
    port: int, count: int, connections: int, scheme: str, inbound: bool, out: Any
) -> None:
    """Build the requests, say so, wait for the go, load; send back the figures."""
    requests = _requests(count, port, scheme, inbound)
    out.send("ready")
    out.recv()
    cpu = time.process_time()
    seconds, latencies, errors = asyncio.run(_load(port, requests, connections))
    out.send((seconds, latencies, errors, time.process_time() - cpu))


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _load_round(
    port: int, count: int, connections: int, processes: int, scheme: str, inbound: bool
) -> tuple[float, list[float], int, float]:
    """One load of ``count`` events from ``processes`` processes started together: wall
    seconds, every response time, the non-200 answers and the load processes' CPU seconds."""
    pipes = []
    procs = []
    for share, conns in zip(_split(count, processes), _split(connections, processes), strict=True):
        parent, child = multiprocessing.Pipe()
        proc = multiprocessing.Process(
            target=_load_process, args=(port, share, max(conns, 1), scheme, inbound, child)
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for parent in pipes:
        assert parent.recv() == "ready"
    t0 = time.perf_counter()
    for parent in pipes:
        parent.send("go")
    results = [parent.recv() for parent in pipes]
    seconds = time.perf_counter() - t0
    for proc in procs:
        proc.join()
    latencies = [t for r in results for t in r[1]]
    return seconds, latencies, sum(r[2] for r in results), sum(r[3] for r in results)


def run_one(
    kind: str,
    events: int,
    connections: int,
    api_base: str,
    scheme: str,
    inbound: bool = False,
    processes: int = 1,
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
        assert daemon.proc is not None
        try:
            # A short warm-up, then the measured run.
            _load_round(port, 200, connections, processes, scheme, inbound)
            daemon_cpu = cpu_seconds(daemon.proc.pid)
            seconds, latencies, errors, load_cpu = _load_round(
                port, events, connections, processes, scheme, inbound
            )
            daemon_cpu = cpu_seconds(daemon.proc.pid) - daemon_cpu
        finally:
            daemon.stop()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    direction = "inbound" if inbound else "outbound"
    return [
        kind,
        scheme,
        direction,
        events,
        connections,
        processes,
        events / seconds,
        p50,
        p99,
        errors,
        daemon_cpu / events * 1e6,
        load_cpu / events * 1e6,
    ]


def verify_cost(rounds: int = 20000) -> list[Any]:
    """Microseconds per verification of one delivery, in this process, for each scheme.

    The daemon's verifier holds two secrets (a rotation), and the delivery is signed with the
    second, so every secret is tried.
    """
    body = _requests(1, 8080, "legacy")[0].split(b"\r\n\r\n", 1)[1]
    event_id = json.loads(body)["event_id"]
    other = "whsec_b3RoZXItYmVuY2gtd2ViaG9vay1zZWNyZXQtMDEy"
    verifier = WebhookVerifier([other, SECRET])
    stamp = int(time.time())
    cases = {
        "standard": SignatureHeaders(
            webhook_id=event_id,
            webhook_timestamp=str(stamp),
            webhook_signature=sign_standard(standard_webhook(SECRET), event_id, stamp, body),
        ),
        "legacy": SignatureHeaders(
            legacy_timestamp=str(stamp), legacy_signature=sign(SECRET, stamp, body)
        ),
    }
    rows = []
    for scheme, headers in cases.items():
        check = verifier.verify(headers, body, now_unix=time.time(), tolerance_seconds=300)
        assert check.verdict == SignatureVerdict.valid, scheme
        t0 = time.perf_counter()
        for _ in range(rounds):
            verifier.verify(headers, body, now_unix=stamp, tolerance_seconds=300)
        rows.append([scheme, len(body), (time.perf_counter() - t0) / rounds * 1e6])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--processes", type=int, default=1, help="load processes sharing the connections"
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--direction", choices=["outbound", "inbound", "both"], default="outbound")
    args = parser.parse_args()
    schemes = args.schemes.split(",")
    unknown = set(schemes) - set(SCHEMES)
    if unknown:
        parser.error(f"--schemes: unknown {', '.join(sorted(unknown))} (use {', '.join(SCHEMES)})")
    directions = {"outbound": [False], "inbound": [True], "both": [False, True]}[args.direction]
    rows = []
    with simulator() as sim:
        for kind in args.databases.split(","):
            for scheme in schemes:
                for inbound in directions:
                    rows.append(
                        run_one(
                            kind,
                            args.events,
                            args.connections,
                            sim.api_base,
                            scheme,
                            inbound,
                            args.processes,
                        )
                    )
    table(
        "webhook ingest: signed message.sent / message.received events (half repeat a chat)",
        [
            "ledger",
            "scheme",
            "direction",
            "events",
            "connections",
            "load processes",
            "events/s",
            "p50 ms",
            "p99 ms",
            "non-200",
            "daemon CPU us/event",
            "load CPU us/event",
        ],
        rows,
    )
    costs = verify_cost()
    table(
        "signature verification alone, two secrets configured",
        ["scheme", "body bytes", "us/delivery"],
        costs,
    )
    parts = [f"{r[0]} {r[1]} {r[2]} {r[6]:.0f} events/s, p99 {r[8]:.1f} ms" for r in rows]
    parts.append(f"verification standard/legacy time {costs[0][2] / costs[1][2]:.2f}")
    by_key = {(r[0], r[1], r[2]): r[6] for r in rows}
    for kind in args.databases.split(","):
        for direction in ("outbound", "inbound"):
            standard = by_key.get((kind, "standard", direction))
            legacy = by_key.get((kind, "legacy", direction))
            if standard and legacy:
                ratio = standard / legacy
                parts.append(f"{kind} {direction} standard/legacy throughput {ratio:.2f}")
        for scheme in schemes:
            inbound_rate = by_key.get((kind, scheme, "inbound"))
            outbound_rate = by_key.get((kind, scheme, "outbound"))
            if inbound_rate and outbound_rate:
                ratio = inbound_rate / outbound_rate
                parts.append(f"{kind} {scheme} inbound/outbound {ratio:.2f}")
    print("\nsummary: " + "; ".join(parts))


if __name__ == "__main__":
    main()
