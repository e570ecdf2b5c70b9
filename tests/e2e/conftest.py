from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, running_stack

# Monday 2026-03-02, 08:00 in New York (13:00 UTC): an hour before the window opens.
DAY1_0800_NY = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, DAY1_0800_NY) as s:
        yield s
