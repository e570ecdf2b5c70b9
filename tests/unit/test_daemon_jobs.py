"""The daemon's job table: when each sweep first runs after start-up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.config import load_schedule
from scheduler.daemon.jobs import CARD_CHECK_JOB, SHARE_JOB, CardWakeups, Jobs
from scheduler.daemon.settings import Settings


class NotStarted(AsyncIOScheduler):
    """Holds the jobs added to it; never runs them."""

    def start(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_the_first_share_pass_runs_at_start_up_beside_the_card_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINQ_API_KEY", "tok-123456")
    monkeypatch.setenv("LINQ_WEBHOOK_SECRET", "whsec-abcdef")
    file = tmp_path / "schedule.yaml"
    file.write_text("share_pass:\n  interval: 30s\n")
    schedule, secrets = load_schedule(file)
    scheduler = NotStarted(timezone=UTC)
    unused: Any = None
    jobs = Jobs(
        scheduler=scheduler,
        wakeups=CardWakeups(scheduler),
        settings=Settings(schedule, secrets, file),
        ledger=unused,
        client=unused,
        metrics=unused,
        share_pass=unused,
        card_sync=unused,
        health=unused,
        stopping=asyncio.Event(),
        track=unused,
    )
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    jobs.start(start)

    # No fixed wait before the first claim: the pass reads the ledger, not the card check.
    assert scheduler.get_job(SHARE_JOB).next_run_time == start
    assert scheduler.get_job(CARD_CHECK_JOB).next_run_time == start
    assert scheduler.get_job("prune").next_run_time == start + timedelta(minutes=1)
