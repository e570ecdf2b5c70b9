"""The demo: simulator + daemon on SQLite in a temporary folder, traffic, shares, a table."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from scheduler.demo.processes import (
    DaemonProcess,
    SimProcess,
    base_env,
    free_port,
    run_command,
    upgrade_db,
    write_schedule,
)
from scheduler.ingest.signing import new_standard_secret

LINES = {"+14155550100": "Acme Sales", "+14155550111": "Acme Support"}
DEMO_TOKEN = "demo-token-not-secret"  # noqa: S105 - only ever valid against the local simulator


class Demo:
    def __init__(self, console: Console, *, chats_per_line: int, keep: bool) -> None:
        self.console = console
        self.chats_per_line = chats_per_line
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix="share-scheduler-demo-"))
        # A whsec_ secret, as Linq hands out: the simulator signs with Standard Webhooks.
        self.env = base_env(LINQ_API_KEY=DEMO_TOKEN, LINQ_WEBHOOK_SECRET=new_standard_secret())
        self.sim: SimProcess | None = None
        self.daemon: DaemonProcess | None = None
        self.eligible: set[str] = set()
        self.not_eligible: dict[str, str] = {}

    def _api(self) -> httpx.Client:
        assert self.sim is not None
        return httpx.Client(
            base_url=self.sim.api_base,
            headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
            timeout=30,
        )

    def start(self) -> None:
        port = free_port()
        self.console.print(f"[bold]share-scheduler demo[/] in {self.workdir}")
        self.sim = SimProcess.start(
            self.workdir,
            env=self.env,
            token=DEMO_TOKEN,
            webhook_url=f"http://127.0.0.1:{port}/webhooks/linq",
            webhook_secret=self.env["LINQ_WEBHOOK_SECRET"],
            activation_delay=3.0,
            latency_ms=30,
        )
        self.console.print(f"  simulator  {self.sim.api_base}")
        now = datetime.now(UTC)
        # A window around the current time, so the demo shares right away at any hour.
        start = (now - timedelta(hours=1)).strftime("%H:00")
        end = (now + timedelta(hours=3)).strftime("%H:00")
        schedule: dict[str, Any] = {
            "instance_id": "demo",
            "linq": {"base_url": self.sim.api_base},
            "database": {"url": f"sqlite:///{self.workdir / 'ledger.db'}"},
            "sharing": {"timezone": "UTC", "window": {"start": start, "end": end}},
            "share_pass": {"interval": "1s", "concurrency": 4, "requests_per_second": 20},
            "cards": {"check_interval": "1s"},
            "lines": [
                {"number": n, "card": {"first_name": name.split()[0], "last_name": name.split()[1]}}
                for n, name in LINES.items()
            ],
            "webhooks": {"listen": f"127.0.0.1:{port}"},
            "logging": {"level": "info", "format": "json"},
        }
        config = write_schedule(self.workdir / "schedule.yaml", schedule)
        upgrade_db(config, self.env)
        self.console.print(f"  ledger     {self.workdir / 'ledger.db'} (migrated)")
        self.daemon = DaemonProcess(config, self.env, port, self.workdir / "daemon.log")
        self.daemon.start()
        self.console.print(f"  daemon     http://127.0.0.1:{port} (window {start}-{end} UTC)")

    def make_traffic(self) -> None:
        assert self.sim is not None
        with self._api() as api:
            # The cards are declared in the schedule: the daemon creates them itself.
            self.console.print(
                "  cards      declared for both lines: the daemon creates them "
                "(inactive until Linq applies them)"
            )

            def chat(line: str, to: list[str], service: str = "iMessage") -> str:
                response = api.post(
                    "/v3/chats",
                    json={
                        "from": line,
                        "to": to,
                        "service": service,
                        "message": {"parts": [{"type": "text", "value": "Your order shipped"}]},
                    },
                )
                response.raise_for_status()
                return str(response.json()["chat"]["id"])

            for line_index, line in enumerate(LINES):
                for i in range(self.chats_per_line):
                    self.eligible.add(chat(line, [f"+1212555{line_index}{i:03d}"]))
            line = next(iter(LINES))
            self.not_eligible[chat(line, ["+12125559001"], "SMS")] = "SMS"
            self.not_eligible[chat(line, ["+12125559002"], "RCS")] = "RCS"
            self.not_eligible[chat(line, ["+12125559003", "+12125559004"])] = "group"
            opted = chat(line, ["+12125559005"])
            self.sim.control("POST", f"chats/{opted}/inbound", json={"text": "STOP"})
            self.not_eligible[opted] = "opted out"
        self.sim.control("POST", "webhooks/drain")
        total = len(self.eligible) + len(self.not_eligible)
        self.console.print(
            f"  traffic    {total} chats created; the daemon learns them by webhook\n"
        )

    def follow(self, *, exit_when_done: bool, timeout: float) -> None:
        assert self.sim is not None
        seen: set[tuple[str, str]] = set()
        deadline = time.monotonic() + timeout
        while True:
            for share in self.sim.control("GET", "shares")["shares"]:
                key = (share["chat_id"], share["at"])
                if key in seen:
                    continue
                seen.add(key)
                at = share["at"][11:19]
                self.console.print(
                    f"  [green]shared[/] {at}  chat {share['chat_id'][:8]}  from {share['from']}",
                    highlight=False,
                )
            done = {chat for chat, _ in seen} >= self.eligible
            if exit_when_done and (done or time.monotonic() > deadline):
                return
            time.sleep(0.5)

    def ledger_rows(self) -> list[dict[str, Any]]:
        assert self.daemon is not None
        config = str(self.daemon.config_path)
        listed = run_command(
            ["ledger", "list", "--config", config, "--json", "--limit", "1000"], self.env
        )
        return list(json.loads(listed.stdout))

    def report(self) -> tuple[int, int, int, int]:
        rows = self.ledger_rows()
        table = Table(title="ledger", header_style="bold")
        for column in ("chat", "line", "service", "status", "shares", "last shared", "next share"):
            # The short chat id is a prefix `ledger show` accepts; neither it nor the number
            # may be cut at 80 columns.
            is_identifier = column in ("chat", "line")
            table.add_column(
                column, no_wrap=is_identifier, min_width=12 if column == "line" else None
            )

        def when(value: str | None, empty: str) -> str:
            return value[5:16].replace("T", " ") if value else empty

        for row in sorted(rows, key=lambda r: (r["line"] or "", r["chat_id"])):
            table.add_row(
                row["chat_id"][:8],
                row["line"] or "-",
                row["service"] or "-",
                self.not_eligible.get(row["chat_id"], row["status"]),
                str(row["share_count"]),
                when(row["last_shared_at"], "-"),
                when(row["next_share_at"], "never"),
            )
        self.console.print(table)
        assert self.sim is not None
        calls = self.sim.control("GET", "calls")["calls"]
        errors = sum(1 for c in calls if not (c["status"] and 200 <= c["status"] < 300))
        shared = len({s["chat_id"] for s in self.sim.control("GET", "shares")["shares"]})
        return len(rows), shared, len(self.not_eligible), errors

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.proc is not None:
            try:
                self.daemon.stop(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        if self.sim is not None:
            self.sim.stop()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def run_demo(
    *, exit_when_done: bool, chats_per_line: int = 10, keep: bool = False, timeout: float = 90
) -> int:
    console = Console()
    demo = Demo(console, chats_per_line=chats_per_line, keep=keep)
    try:
        demo.start()
        demo.make_traffic()
        try:
            demo.follow(exit_when_done=exit_when_done, timeout=timeout)
        except KeyboardInterrupt:
            console.print("\nstopping")
        chats, shared, skipped, errors = demo.report()
    finally:
        demo.stop()
    ok = shared == len(demo.eligible)
    console.print(
        f"demo: {chats} chats, {shared} shared, {skipped} not eligible, {errors} errors",
        highlight=False,
    )
    return 0 if ok else 1
