"""A simulator and one or more daemons as real processes, on a test-driven clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from scheduler.clock import CLOCK_FILE_ENV, set_clock_file
from scheduler.demo.processes import (
    DaemonProcess,
    SimProcess,
    base_env,
    free_port,
    upgrade_db,
    write_schedule,
)

API_KEY = "e2e-api-key-5f1c2d9a"
# A Standard Webhooks secret, as Linq hands out: the simulator signs both ways with it and the
# daemon verifies the Standard signature.
WEBHOOK_SECRET = "whsec_ZTJlLXdlYmhvb2stc2VjcmV0LTc3YWEzMS0wMDAw"


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class Stack:
    def __init__(self, workdir: Path, start: datetime, *, database_url: str | None = None) -> None:
        self.workdir = workdir
        self.clock_file = workdir / "clock"
        set_clock_file(self.clock_file, start)
        self.env = base_env(
            **{
                CLOCK_FILE_ENV: str(self.clock_file),
                "LINQ_API_KEY": API_KEY,
                "LINQ_WEBHOOK_SECRET": WEBHOOK_SECRET,
            }
        )
        self.database_url = database_url or f"sqlite:///{workdir / 'ledger.db'}"
        self.sim: SimProcess | None = None
        self.daemons: list[DaemonProcess] = []

    def set_time(self, target: datetime) -> None:
        set_clock_file(self.clock_file, target)

    def start_sim(self, webhook_port: int | None, **kwargs: Any) -> SimProcess:
        self.sim = SimProcess.start(
            self.workdir,
            env=self.env,
            token=API_KEY,
            webhook_url=f"http://127.0.0.1:{webhook_port}/webhooks/linq" if webhook_port else None,
            webhook_secret=WEBHOOK_SECRET,
            **kwargs,
        )
        return self.sim

    def schedule(self, port: int, overrides: dict[str, Any], name: str) -> dict[str, Any]:
        assert self.sim is not None
        base: dict[str, Any] = {
            "instance_id": name,
            "linq": {"base_url": self.sim.api_base, "timeout": "3s"},
            "database": {"url": self.database_url},
            "sharing": {
                "timezone": "America/New_York",
                "window": {"start": "09:00", "end": "20:00"},
                "min_interval": "12h",
            },
            "share_pass": {
                "interval": "300ms",
                "concurrency": 8,
                "requests_per_second": 500,
                "lease": "30s",
                "max_tries": 3,
                "retry_backoff": "50ms",
                "retry_backoff_max": "200ms",
                "shutdown_grace": "5s",
            },
            "cards": {"check_interval": "300ms"},
            "webhooks": {"listen": f"127.0.0.1:{port}"},
            "logging": {"level": "info", "format": "json"},
        }
        return deep_merge(base, overrides)

    def add_daemon(
        self, overrides: dict[str, Any] | None = None, port: int | None = None
    ) -> DaemonProcess:
        port = port or free_port()
        name = f"d{len(self.daemons)}"
        config = write_schedule(
            self.workdir / f"{name}.yaml", self.schedule(port, overrides or {}, name)
        )
        if not self.daemons:
            upgrade_db(config, self.env)
        daemon = DaemonProcess(config, self.env, port, self.workdir / f"{name}.log")
        self.daemons.append(daemon)
        return daemon

    # -- simulator helpers -----------------------------------------------------------------

    def api(self) -> httpx.Client:
        assert self.sim is not None
        return httpx.Client(
            base_url=self.sim.api_base,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )

    def create_card(self, number: str, first_name: str = "Acme") -> None:
        with self.api() as api:
            resp = api.post(
                "/v3/contact_card", json={"phone_number": number, "first_name": first_name}
            )
            resp.raise_for_status()

    def create_chat(self, line: str, to: list[str], service: str = "iMessage") -> str:
        with self.api() as api:
            resp = api.post(
                "/v3/chats",
                json={
                    "from": line,
                    "to": to,
                    "service": service,
                    "message": {"parts": [{"type": "text", "value": "Hello from Acme"}]},
                },
            )
            resp.raise_for_status()
            return str(resp.json()["chat"]["id"])

    def shares(self) -> list[dict[str, Any]]:
        assert self.sim is not None
        return list(self.sim.control("GET", "shares")["shares"])

    def calls(self) -> list[dict[str, Any]]:
        assert self.sim is not None
        return list(self.sim.control("GET", "calls")["calls"])

    def drain_webhooks(self) -> None:
        assert self.sim is not None
        self.sim.control("POST", "webhooks/drain")

    def stop(self) -> None:
        for daemon in self.daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.kill()
        if self.sim is not None:
            self.sim.stop()


@contextmanager
def running_stack(
    workdir: Path, start: datetime, *, database_url: str | None = None, log_tail: int = 40
) -> Iterator[Stack]:
    """A stack stopped when the block ends, each daemon's last log lines printed for the report."""
    stack = Stack(workdir, start, database_url=database_url)
    try:
        yield stack
    finally:
        stack.stop()
        for daemon in stack.daemons:
            print(f"--- {daemon.log_path.name} (tail) ---")
            print("\n".join(daemon.logs().splitlines()[-log_tail:]))


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def ledger_chats(daemon: DaemonProcess, *extra: str) -> list[dict[str, Any]]:
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "scheduler",
            "ledger",
            "list",
            "--config",
            str(daemon.config_path),
            "--json",
            "--limit",
            "100000",
            *extra,
        ],
        check=True,
        capture_output=True,
        text=True,
        env=daemon.env,
    )
    return list(json.loads(out.stdout))
