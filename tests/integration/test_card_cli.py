"""``share-scheduler cards status|sync`` and ``line pause|resume`` as real commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.ledger.engine import Ledger
from scheduler.sim.settings import SimSettings
from scheduler.testing import SimHandle

LINE = "+14155550100"
WATCHED = "+14155550111"
CARD = {"first_name": "Acme", "last_name": "Support"}


@pytest.fixture(scope="module")
def sim_settings() -> SimSettings:
    return SimSettings(activation_delay=1.0)


@pytest.fixture
def config(tmp_path: Path, ledger_url: str, ledger: Ledger, sim: SimHandle) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "linq": {"base_url": sim.api_base, "timeout": "5s"},
                "database": {"url": ledger_url},
                "cards": {"activation_poll": "200ms", "check_interval": "1s"},
                "lines": [{"number": LINE, "card": CARD}, {"number": WATCHED}],
            }
        )
    )
    return path


def _cli(
    *args: str, sim: SimHandle | None = None, token: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "LINQ_"))}
    env.pop("SHARE_SCHEDULER_CLOCK_FILE", None)
    env["COLUMNS"] = "200"  # a terminal wide enough for the status table
    if sim is not None and token:
        env["LINQ_API_KEY"] = sim.token
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cards_sync_creates_waits_for_activation_and_status_shows_it(
    config: Path, sim: SimHandle
) -> None:
    out = _json(_cli("cards", "sync", "--config", str(config), "--wait", "--json", sim=sim))
    assert [(w["line"], w["action"], w["result"]) for w in out["writes"]] == [
        (LINE, "create", "ok")
    ]
    assert out["lines"][LINE]["action"] == "in_sync"
    assert WATCHED not in out["lines"]
    assert out["runs"] >= 2  # it polled until the card was active

    status = {r["line"]: r for r in _json(_cli("cards", "status", "-c", str(config), "--json"))}
    managed = status[LINE]
    assert managed["desired"] == {**CARD, "image_url": None}
    assert managed["observed"] == {**CARD, "image_url": None}
    assert managed["active"] is True
    assert managed["state"] == "active"
    assert managed["since"] is not None
    assert managed["last_error"] is None
    assert managed["writes_last_10m"] == 1
    assert managed["next_write_at"] is not None
    assert managed["plan"] == "in_sync"
    watched = status[WATCHED]
    assert watched["managed"] is False
    assert watched["state"] == "absent"
    assert watched["next_write_at"] is None

    table = _cli("cards", "status", "-c", str(config))
    assert table.returncode == 0, table.stderr
    assert LINE in table.stdout
    assert "observed only" in table.stdout
    assert sim.token not in table.stdout + table.stderr

    again = _json(_cli("cards", "sync", "-c", str(config), "--json", sim=sim))
    assert again["writes"] == []


def test_cards_sync_needs_the_api_token(config: Path, sim: SimHandle) -> None:
    result = _cli("cards", "sync", "-c", str(config), sim=sim, token=False)
    assert result.returncode == 2
    assert "LINQ_API_KEY" in result.stderr


def test_line_pause_and_resume(config: Path, sim: SimHandle) -> None:
    _json(_cli("cards", "sync", "-c", str(config), "--json", sim=sim))
    paused = _json(_cli("line", "pause", LINE, "-c", str(config), "--json"))
    assert paused == {"line": LINE, "paused": True, "chats": 0}
    status = {r["line"]: r for r in _json(_cli("cards", "status", "-c", str(config), "--json"))}
    assert status[LINE]["paused"] is True
    resumed = _cli("line", "resume", LINE, "-c", str(config))
    assert resumed.returncode == 0, resumed.stderr
    assert f"line {LINE} resumed" in resumed.stdout
    status = {r["line"]: r for r in _json(_cli("cards", "status", "-c", str(config), "--json"))}
    assert status[LINE]["paused"] is False


def test_line_commands_name_what_is_wrong(config: Path) -> None:
    unknown = _cli("line", "pause", "+14155559999", "-c", str(config))
    assert unknown.returncode == 1
    assert "no line +14155559999" in unknown.stderr
    bad = _cli("line", "resume", "4155550100", "-c", str(config))
    assert bad.returncode == 2
    assert "not an E.164 phone number" in bad.stderr
    missing = _cli("cards", "status", "--line", "+14155559999", "-c", str(config))
    assert missing.returncode == 1
    assert "no line +14155559999" in missing.stderr
