"""The systemd unit, as systemd reads it: ``systemd-analyze verify``, then what it promises.

``verify`` rejects unknown keys, keys in the wrong section and commands that do not exist; the
unit's ``/usr/local/bin/share-scheduler`` is pointed at the installed command for the check.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.config import Schedule
from scheduler.errors import ConfigError, LedgerUnavailable, SchemaOutOfDate, UnknownRevision

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "share-scheduler.service"
INSTALLED_AT = "/usr/local/bin/share-scheduler"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def _seconds(value: str) -> float:
    number, unit = (value[:-3], 60) if value.endswith("min") else (value.rstrip("s"), 1)
    return float(number) * unit


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is part of Debian's systemd package"
    command = Path(sys.executable).parent / "share-scheduler"
    assert command.is_file()
    text = UNIT.read_text()
    assert INSTALLED_AT in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_AT, str(command)))
    run = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    # verify warns (exit 0) about unknown or misplaced keys: nothing may be said at all.
    assert (run.returncode, run.stderr.strip(), run.stdout.strip()) == (0, "", "")


def test_systemd_analyze_catches_a_misplaced_key(tmp_path: Path) -> None:
    """The check above can fail: StartLimitIntervalSec under [Service] is ignored by systemd."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    command = Path(sys.executable).parent / "share-scheduler"
    text = UNIT.read_text().replace(INSTALLED_AT, str(command))
    broken = text.replace("[Service]\n", "[Service]\nStartLimitIntervalSec=300\n", 1)
    unit = tmp_path / UNIT.name
    unit.write_text(broken)
    run = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert "Unknown key 'StartLimitIntervalSec' in section [Service]" in run.stderr


def test_the_unit_notifies_and_is_watched() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert _seconds(service["WatchdogSec"]) >= 10, "pings every half period, from the loop"
    assert service["ExecStart"] == f"{INSTALLED_AT} run"
    assert service["ExecStartPre"] == f"{INSTALLED_AT} db upgrade"


def test_start_limits_are_in_unit_and_exit_codes_are_mapped() -> None:
    unit = _unit()
    assert "StartLimitIntervalSec" in unit["Unit"] and "StartLimitBurst" in unit["Unit"]
    assert "StartLimitIntervalSec" not in unit["Service"]
    assert int(unit["Unit"]["StartLimitBurst"]) >= 3
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    prevented = {int(code) for code in service["RestartPreventExitStatus"].split()}
    # A bad schedule or a schema mismatch: restarting cannot help. A lost database can.
    assert prevented == {
        ConfigError.exit_code,
        SchemaOutOfDate.exit_code,
        UnknownRevision.exit_code,
    }
    assert LedgerUnavailable.exit_code not in prevented


def test_stop_timeout_outlasts_the_daemons_shutdown_grace() -> None:
    service = _unit()["Service"]
    grace = Schedule().share_pass.shutdown_grace
    # The pass's grace, then up to 5 s for the HTTP server to close.
    assert timedelta(seconds=_seconds(service["TimeoutStopSec"])) > grace + timedelta(seconds=5)


@pytest.mark.parametrize("section", ["Unit", "Service", "Install"])
def test_the_unit_has_its_sections(section: str) -> None:
    assert section in _unit()
