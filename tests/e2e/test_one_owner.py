"""Start-up clashes end in one line and an exit code: a second daemon on one SQLite ledger,
a webhook address another process listens on."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from scheduler.demo.processes import DaemonProcess, free_port
from tests.e2e.harness import Stack

pytestmark = pytest.mark.e2e


def _run_to_exit(daemon: DaemonProcess) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler", "run", "--config", str(daemon.config_path)],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    daemon.log_path.write_text(proc.stdout + proc.stderr)
    return proc


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_a_second_daemon_on_one_sqlite_ledger_refuses_to_start(stack: Stack) -> None:
    stack.start_sim(None)
    first = stack.add_daemon()
    second = stack.add_daemon()
    first.start()
    proc = _run_to_exit(second)
    assert proc.returncode == 4
    line = _one_line(proc)
    assert "in use by another daemon" in line
    assert str(first.proc.pid if first.proc else "") in line
    assert "PostgreSQL" in line
    # The first one goes on; once it has stopped, the ledger is free again.
    assert first.proc is not None and first.proc.poll() is None
    assert first.stop() == 0
    second.start()
    assert second.stop() == 0


def test_a_taken_listen_address_is_one_line_and_its_own_exit_code(stack: Stack) -> None:
    stack.start_sim(None)
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        daemon = stack.add_daemon(port=port)
        proc = _run_to_exit(daemon)
    assert proc.returncode == 5
    line = _one_line(proc)
    assert f"webhooks.listen 127.0.0.1:{port}" in line
    assert "address already in use" in line
