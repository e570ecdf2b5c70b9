"""Fixtures shared by the integration tests: the in-process simulator's clock, empty ledgers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler import clock


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clock file for this module; the simulator thread and the test read the same time."""
    path = tmp_path_factory.mktemp("clock") / "now"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(clock.CLOCK_FILE_ENV, str(path))
        yield path


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, no schema at all, on each database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("empty_pg_url")
    return url
