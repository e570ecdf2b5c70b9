"""Fixtures shared by the integration tests: a simulator and its clock, empty ledgers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from scheduler import clock
from scheduler.sim.settings import SimSettings
from scheduler.testing import SimHandle, running_simulator


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


@pytest.fixture(scope="module")
def sim_settings() -> SimSettings:
    """The simulator's settings for a module: a module overrides this fixture to change them."""
    return SimSettings(activation_delay=0)


@pytest.fixture(scope="module")
def sim_server(sim_settings: SimSettings, clock_file: Path) -> Iterator[SimHandle]:
    """One simulator on a loopback port for the module's tests, on the module's clock."""
    # A copy: the simulator changes its settings in place when a test sets knobs.
    with running_simulator(replace(sim_settings)) as handle:
        yield handle


@pytest.fixture
def sim(sim_server: SimHandle, sim_settings: SimSettings) -> SimHandle:
    """The module's simulator for one test: emptied, with the module's knobs back."""
    with sim_server.control() as control:
        control.reset()
        control.faults(**sim_settings.knobs())
    return sim_server
