"""Commands that only read never create a ledger: a mistyped SQLite path is an error (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

READ_COMMANDS = [
    ["ledger", "list"],
    ["ledger", "show", "chat-1"],
    ["ledger", "stats"],
    ["ledger", "export", "--format", "jsonl"],
    ["plan"],
    ["cards", "status"],
    ["line", "pause", "+14155550100"],
    ["db", "current"],
    ["chat", "pause", "chat-1"],
    ["doctor"],
]


def _run(args: list[str], database: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SHARE_SCHEDULER_DATABASE_URL": f"sqlite:///{database}",
        "LINQ_API_KEY": "tok",
        "LINQ_WEBHOOK_SECRET": "whsec",
    }
    schedule = database.parent.parent / "schedule.yaml"
    schedule.write_text(f"database: {{url: 'sqlite:///{database}'}}\nlines: []\n")
    env["SHARE_SCHEDULER_CONFIG"] = str(schedule)
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("argv", READ_COMMANDS, ids=lambda a: " ".join(a))
def test_a_read_command_refuses_a_missing_ledger_and_creates_nothing(
    argv: list[str], tmp_path: Path
) -> None:
    database = tmp_path / "mistyped" / "ledger.db"
    result = _run(argv, database)
    assert result.returncode == 2 or argv == ["doctor"], (result.stdout, result.stderr)
    assert str(database) in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not database.parent.exists(), "a read command created the ledger's directory"


def test_only_db_upgrade_creates_the_ledger(tmp_path: Path) -> None:
    database = tmp_path / "new" / "ledger.db"
    created = _run(["db", "upgrade"], database)
    assert created.returncode == 0, created.stderr
    assert database.exists()
    listed = _run(["ledger", "stats"], database)
    assert listed.returncode == 0, listed.stderr


async def test_an_existing_ledger_is_shown_by_its_configured_url(sqlite_url: str) -> None:
    """Opened read-write only (SQLite's mode=rw URI), it is still named as configured."""
    from scheduler.config import DatabaseConfig
    from scheduler.ledger.engine import Ledger

    ledger = Ledger.from_config(DatabaseConfig(url=sqlite_url))
    try:
        async with ledger.read() as conn:
            assert conn.engine.url.query.get("mode") == "rw"
        path = sqlite_url.removeprefix("sqlite:///")
        assert ledger.url == f"sqlite+aiosqlite:///{path}"
    finally:
        await ledger.dispose()
