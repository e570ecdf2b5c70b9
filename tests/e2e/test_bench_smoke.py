"""Every benchmark command runs to its summary line, at toy sizes (no figures are judged)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

COMMANDS = {
    "card_gone": ["--chats", "600", "--delete-after", "100"],
    "crash": ["--kills", "2", "--chats", "400", "--replicas", "2", "--max-gap", "0.3"],
    "share_pass": ["--chats", "60", "--runs", "1"],
    "latency_pass": ["--chats", "64", "--latency-ms", "20"],
    "due_query": ["--sizes", "600,1200", "--repeats", "2"],
    "webhook_ingest": ["--events", "100", "--connections", "4", "--direction", "both"],
    "memory": ["--chats", "2000"],
    "naive": ["--sizes", "600", "--timed-adds", "50"],
    "export_rss": ["--chats", "2000"],
    "import_rss": ["--rows", "2000"],
    "peer_procrastinate": ["--chats", "50", "--runs", "1", "--latencies", "0"],
    "replicas": ["--chats", "60", "--runs", "1", "--replicas", "1,2", "--latency-ms", "20"],
    "wal_share": ["--chats", "300", "--runs", "1"],
    "scale": ["--chats", "1000,2000", "--pass-chats", "20", "--runs", "1", "--repeats", "2"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_benchmark_runs_to_its_summary(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *COMMANDS[name]],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("summary: "), proc.stdout[-2000:]
