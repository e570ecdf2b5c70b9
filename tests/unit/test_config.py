"""The schedule file: defaults, validation errors that name the field, secrets kept out."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.config import Secret, load_schedule, parse_duration
from scheduler.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ENV = {"LINQ_API_KEY": "tok-123456", "LINQ_WEBHOOK_SECRET": "whsec-abcdef"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["soon", "5 parsecs", -1, True, "1h-3m"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize("name", ["schedule.example.yaml", "compose.schedule.yaml"])
def test_shipped_schedules_are_valid(name: str) -> None:
    schedule, secrets = load_schedule(ROOT / "deploy" / name, env=ENV)
    assert schedule.sharing.window.start.hour == 9
    assert secrets.api_key is not None
    assert secrets.api_key.reveal() == "tok-123456"


def test_three_mistakes_three_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
sharing:
  timezone: Mars/Olympus_Mons
  window: {start: "10:00", end: "10:00"}
lines:
  - number: "+1 (415) 555-0100"
""",
    )
    with pytest.raises(ConfigError) as info:
        load_schedule(path, env=ENV)
    rendered = sorted(str(p) for p in info.value.problems)
    assert len(rendered) == 3
    assert rendered[0].startswith("lines.0.number: '+1 (415) 555-0100' is not an E.164")
    assert rendered[1].startswith("sharing.timezone: unknown time zone 'Mars/Olympus_Mons'")
    assert rendered[2] == "sharing.window: the share window is empty: start and end are equal"


def test_unknown_key_and_missing_secrets_are_reported_together(tmp_path: Path) -> None:
    path = _write(tmp_path, "share_pass:\n  concurency: 4\n")
    with pytest.raises(ConfigError) as info:
        load_schedule(path, env={})
    paths = [p.path for p in info.value.problems]
    assert paths == ["share_pass.concurency", "linq.api_key_env", "webhooks.secret_envs.0"]
    assert "unknown key" in str(info.value.problems[0])


def test_unquoted_times_and_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 09:00 as 540; both spellings mean nine o'clock.
    path = _write(tmp_path, "sharing:\n  window: {start: 09:00, end: '21:30'}\n")
    schedule, _ = load_schedule(path, env=ENV)
    assert (schedule.sharing.window.start.hour, schedule.sharing.window.end.minute) == (9, 30)
    bad = _write(tmp_path, "lines:\n  - number: +14155550100\n")
    with pytest.raises(ConfigError, match="quoted"):
        load_schedule(bad, env=ENV)


def test_lease_must_outlive_a_call(tmp_path: Path) -> None:
    path = _write(tmp_path, "linq: {timeout: 60s}\nshare_pass: {lease: 1m, max_tries: 4}\n")
    with pytest.raises(ConfigError, match="lease"):
        load_schedule(path, env=ENV)


def test_attempt_retention_at_least_a_day_or_null(tmp_path: Path) -> None:
    path = _write(tmp_path, "share_pass: {attempt_retention: 6h}\n")
    with pytest.raises(ConfigError, match=r"share_pass\.attempt_retention: .*at least 1d"):
        load_schedule(path, env=ENV)
    kept, _ = load_schedule(_write(tmp_path, "share_pass: {attempt_retention: null}\n"), env=ENV)
    assert kept.share_pass.attempt_retention is None
    pruned, _ = load_schedule(_write(tmp_path, "share_pass: {attempt_retention: 30d}\n"), env=ENV)
    assert pruned.share_pass.attempt_retention == timedelta(days=30)


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    schedule, secrets = load_schedule(_write(tmp_path, "{}\n"), env=ENV)
    assert "tok-123456" not in repr(secrets)
    assert "tok-123456" not in repr(schedule)
    assert "whsec-abcdef" not in repr(secrets.webhook_secrets)
    assert Secret("x1234", "s") == Secret("x1234", "t")


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid YAML: line 2, column 11"):
        load_schedule(_write(tmp_path, "sharing:\n  window: : x\n"), env=ENV)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_config_check_cli(tmp_path: Path) -> None:
    ok = _cli("config", "check", str(ROOT / "deploy" / "schedule.example.yaml"), env=ENV)
    assert (ok.returncode, ok.stdout.strip()) == (0, "ok")
    bad = _write(tmp_path, "sharing:\n  timezone: Nowhere/Land\n  min_interval: often\nbogus: 1\n")
    out = _cli("config", "check", str(bad), env=ENV)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{bad}: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {
        "bogus",
        "sharing.timezone",
        "sharing.min_interval",
    }
