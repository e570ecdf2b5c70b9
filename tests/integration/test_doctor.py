"""``doctor`` on a fresh, healthy install: warnings apart from failures, paused lines shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scheduler import clock
from scheduler.cards.status import set_line_paused
from scheduler.doctor import run_doctor
from scheduler.ledger.engine import Ledger
from scheduler.sim.settings import SimSettings
from scheduler.testing import SimHandle
from tests.factories import add_line

TOKEN = "doctor-token-51ae"
HOOK = "doctor-hook-secret-0b7c"
L1 = "+14155550100"
L2 = "+14155550111"
ENV = {"LINQ_API_KEY": TOKEN, "LINQ_WEBHOOK_SECRET": HOOK}


@pytest.fixture(scope="module")
def sim_settings() -> SimSettings:
    return SimSettings(token=TOKEN, activation_delay=0)


def fresh_config(tmp_path: Path, sim: SimHandle, ledger_url: str) -> Path:
    """What the README's install steps produce: lines with their cards declared."""
    path = tmp_path / "schedule.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "linq": {"base_url": sim.api_base},
                "database": {"url": ledger_url},
                "lines": [
                    {"number": L1, "card": {"first_name": "Acme", "last_name": "Sales"}},
                    {"number": L2, "card": {"first_name": "Acme", "last_name": "Support"}},
                ],
            }
        )
    )
    return path


async def test_doctor_passes_on_a_fresh_install(
    ledger_url: str, ledger: Ledger, sim: SimHandle, tmp_path: Path
) -> None:
    # A migrated, empty ledger; an account without cards yet: the daemon creates the
    # declared cards at its first card check. Nothing here is broken.
    config = fresh_config(tmp_path, sim, ledger_url)
    checks = await run_doctor(config, env=ENV)
    failed = [(c.name, c.detail) for c in checks if c.failed]
    assert failed == []
    cards = {c.name: c for c in checks if c.name.startswith("card ")}
    assert {c.status for c in cards.values()} == {"warn"}
    assert "the daemon creates it" in cards[f"card {L1}"].detail


async def test_doctor_shows_paused_lines_as_warnings(
    ledger_url: str, ledger: Ledger, sim: SimHandle, tmp_path: Path
) -> None:
    config = fresh_config(tmp_path, sim, ledger_url)
    now = clock.now()
    await add_line(ledger, L1, now)
    await add_line(ledger, L2, now)
    await set_line_paused(ledger, L2, True, now)
    checks = {c.name: c for c in await run_doctor(config, env=ENV)}
    assert checks[f"line {L2}"].status == "warn"
    assert "paused" in checks[f"line {L2}"].detail
    assert f"line {L1}" not in checks
    assert not [c for c in checks.values() if c.failed]
