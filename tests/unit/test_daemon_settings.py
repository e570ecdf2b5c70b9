"""The daemon's schedule in force: a SIGHUP reload applies a valid file, and only that."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

import scheduler.daemon.settings as settings_module
from scheduler.config import Schedule, load_schedule
from scheduler.core.rule import Policy
from scheduler.daemon.settings import Settings

ENV = {"LINQ_API_KEY": "tok-123456", "LINQ_WEBHOOK_SECRET": "whsec-abcdef"}


@pytest.fixture
def path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    # Reloads reconfigure the process's logging; this test's process keeps its own.
    monkeypatch.setattr(settings_module, "configure_logging", lambda *args: None)
    monkeypatch.setattr(settings_module, "register_secrets", lambda values: None)
    file = tmp_path / "schedule.yaml"
    file.write_text("share_pass:\n  interval: 30s\n")
    return file


def _settings(path: Path) -> Settings:
    schedule, secrets = load_schedule(path)
    return Settings(schedule, secrets, path)


async def test_a_valid_file_becomes_the_schedule_and_parts_get_the_old_one(path: Path) -> None:
    settings = _settings(path)
    before, policy_before = settings.schedule, settings.policy
    path.write_text("share_pass:\n  interval: 45s\nsharing:\n  max_shares: 3\n")
    applied: list[Schedule] = []

    await settings.reload(asyncio.Event(), applied.append)

    assert applied == [before]
    assert settings.schedule.share_pass.interval == timedelta(seconds=45)
    assert settings.policy == Policy.from_config(settings.schedule.sharing) != policy_before


async def test_an_invalid_file_keeps_the_schedule(path: Path) -> None:
    settings = _settings(path)
    before = settings.schedule
    path.write_text("share_pass:\n  interval: soon\n")
    applied: list[Schedule] = []

    await settings.reload(asyncio.Event(), applied.append)

    assert applied == []
    assert settings.schedule is before


async def test_no_reload_once_stopping(path: Path) -> None:
    settings = _settings(path)
    before = settings.schedule
    path.write_text("share_pass:\n  interval: 45s\n")
    stopping = asyncio.Event()
    stopping.set()
    applied: list[Schedule] = []

    await settings.reload(stopping, applied.append)

    assert applied == []
    assert settings.schedule is before
