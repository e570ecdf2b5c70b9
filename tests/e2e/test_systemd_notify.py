"""The real daemon speaks systemd's notify protocol to a socket the test binds.

As under ``Type=notify`` with ``WatchdogSec=``: ``NOTIFY_SOCKET`` names a unix datagram socket,
``WATCHDOG_USEC`` the watchdog period. READY=1 must come once the daemon answers HTTP with its
scheduler running, WATCHDOG=1 again and again at half the period, STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
L1 = "+14155550100"


@dataclass
class NotifySocket:
    """A bound AF_UNIX datagram socket recording what arrives, and what /readyz said then."""

    path: Path
    ready_url: str
    messages: list[tuple[float, str]] = field(default_factory=list)
    readyz_at_ready: list[Any] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            text = data.decode()
            if "READY=1" in text.splitlines():
                # Asked at once, before anything else happens: the daemon must answer now.
                try:
                    resp = httpx.get(self.ready_url, timeout=10)
                    self.readyz_at_ready.append((resp.status_code, resp.json()))
                except httpx.HTTPError as exc:
                    self.readyz_at_ready.append(repr(exc))
            self.messages.append((time.monotonic(), text))

    def states(self, name: str) -> list[float]:
        return [at for at, text in self.messages if name in text.splitlines()]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(5)


@pytest.fixture
def notify(stack: Stack) -> Iterator[NotifySocket]:
    # A short path: AF_UNIX addresses are limited to about 100 bytes.
    sock = NotifySocket(Path(f"/tmp/ss-notify-{id(stack):x}.sock"), "")
    sock.path.unlink(missing_ok=True)
    try:
        yield sock
    finally:
        sock.close()
        sock.path.unlink(missing_ok=True)


def test_ready_watchdog_and_stopping_reach_the_notify_socket(
    stack: Stack, notify: NotifySocket
) -> None:
    from scheduler.demo.processes import free_port

    port = free_port()
    stack.start_sim(port)
    stack.create_card(L1)
    daemon = stack.add_daemon({"lines": [{"number": L1}]}, port=port)
    notify.ready_url = f"{daemon.base_url}/readyz"
    notify.start()
    env = {
        **daemon.env,
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "1000000",
        # As in the container image: the log lines on stdout, nothing on stderr.
        "SHARE_SCHEDULER_LOG_STREAM": "stdout",
    }
    stderr_path = daemon.log_path.with_suffix(".stderr")
    with daemon.log_path.open("ab") as log, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "run", "--config", str(daemon.config_path)],
            stdout=log,
            stderr=err,
            env=env,
        )
        try:
            wait_for(lambda: bool(notify.states("READY=1")), timeout=60, what="READY=1")
            # READY=1 came when the HTTP server answered and the scheduler ran.
            ((status, body),) = notify.readyz_at_ready
            assert status in (200, 503), body
            assert body["checks"]["scheduler"] == "running"
            assert body["checks"]["ledger"] == "ok"
            # The watchdog: pinged again and again, about every 0.5 s (half of 1 s).
            wait_for(lambda: len(notify.states("WATCHDOG=1")) >= 4, timeout=30, what="pings")
            assert notify.states("READY=1")[0] <= notify.states("WATCHDOG=1")[0]
            assert not notify.states("STOPPING=1")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    wait_for(lambda: bool(notify.states("STOPPING=1")), timeout=10, what="STOPPING=1")
    events = [json.loads(line)["event"] for line in daemon.logs().splitlines() if line.strip()]
    assert "daemon.started" in events and "systemd.ready" in events and "daemon.stopped" in events
    assert stderr_path.read_text() == ""
    assert len(notify.states("READY=1")) == 1
    stopping_at = notify.states("STOPPING=1")[0]
    assert stopping_at > notify.states("WATCHDOG=1")[-1] - 1.0


def test_the_healthcheck_command_finds_the_running_daemon(stack: Stack) -> None:
    """The image's HEALTHCHECK (python -m scheduler.healthcheck) against the real daemon."""
    from scheduler.demo.processes import free_port

    port = free_port()
    stack.start_sim(port)
    daemon = stack.add_daemon({"lines": [{"number": L1}]}, port=port)
    env = {**daemon.env, "SHARE_SCHEDULER_CONFIG": str(daemon.config_path)}
    daemon.start()
    alive = subprocess.run(
        [sys.executable, "-m", "scheduler.healthcheck"], capture_output=True, text=True, env=env
    )
    assert (alive.returncode, alive.stdout.strip()) == (
        0,
        f"http://127.0.0.1:{port}/livez: alive",
    ), alive.stderr
    assert daemon.stop() == 0
    dead = subprocess.run(
        [sys.executable, "-m", "scheduler.healthcheck"], capture_output=True, text=True, env=env
    )
    assert dead.returncode == 1 and f"127.0.0.1:{port}/livez" in dead.stderr
