"""`share-scheduler demo --exit-when-done`, as a newcomer runs it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_to_its_summary_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scheduler", "demo", "--exit-when-done", "--chats-per-line", "5"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"demo: (\d+) chats, (\d+) shared, (\d+) not eligible, (\d+) errors", last)
    assert match, last
    chats, shared, skipped, errors = map(int, match.groups())
    assert (chats, shared, skipped, errors) == (14, 10, 4, 0)
    assert out.stdout.count(" shared ") >= 10
