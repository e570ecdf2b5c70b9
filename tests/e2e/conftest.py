from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.harness import Stack

# Monday 2026-03-02, 08:00 in New York (13:00 UTC): an hour before the window opens.
DAY1_0800_NY = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, DAY1_0800_NY)
    try:
        yield s
    finally:
        s.stop()
        for daemon in s.daemons:
            print(f"--- {daemon.log_path.name} (tail) ---")
            print("\n".join(daemon.logs().splitlines()[-40:]))
