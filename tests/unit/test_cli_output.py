"""The CLI's output helpers and its start-up: tables that never cut ids, formats, --version."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import typer
from rich.console import Console

from scheduler import __version__
from scheduler.cli import common
from scheduler.cli.common import OutputFormat, fmt_age, output_format, print_table

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LONG_ID = "0b0e5a9c-1f4e-4d8e-9a61-3c2f6c1d7e55-with-a-long-tail"


def test_ages_read_like_kubectl() -> None:
    assert fmt_age(None, NOW) == "-"
    assert fmt_age(NOW, NOW) == "now"
    assert fmt_age(NOW - timedelta(seconds=42), NOW) == "42s"
    assert fmt_age(NOW - timedelta(minutes=5), NOW) == "5m"
    assert fmt_age(NOW - timedelta(hours=30), NOW) == "30h"
    assert fmt_age(NOW - timedelta(days=3, hours=1), NOW) == "3d"
    assert fmt_age(NOW + timedelta(hours=21, minutes=59), NOW) == "in 21h"


def test_json_is_the_alias_of_o_json() -> None:
    assert output_format(None, False) == OutputFormat.table
    assert output_format(None, True) == OutputFormat.json
    assert output_format(OutputFormat.wide, False) == OutputFormat.wide
    assert output_format(OutputFormat.json, True) == OutputFormat.json
    with pytest.raises(typer.BadParameter, match="--json contradicts -o yaml"):
        output_format(OutputFormat.yaml, True)


UUID = "0b0e5a9c-1f4e-4d8e-9a61-3c2f6c1d7e55"


def _render(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    terminal: bool,
    width: int,
    chat_id: str,
) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=terminal, color_system=None)
    monkeypatch.setattr(common, "out", console)
    rows = [[chat_id, "+14155550100", "active", "a rather long note that may fold", None]]
    print_table("1 chat", ["chat_id", "line", "status", "note", "next"], rows)
    return buffer.getvalue() + capsys.readouterr().out


def test_terminal_tables_fold_other_cells_but_never_ids(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _render(monkeypatch, capsys, terminal=True, width=80, chat_id=UUID)
    lines = text.splitlines()
    assert lines[0].strip() == "1 chat"
    assert lines[2].startswith(UUID + "  +14155550100  active")
    assert "…" not in text
    assert max(len(line) for line in lines) <= 80
    assert len(lines) > 3, "the note folded onto more lines"


def test_ids_too_wide_for_the_terminal_print_plain(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rich would crop the id at 60 columns: the table is printed plain and the terminal
    # wraps its lines instead.
    text = _render(monkeypatch, capsys, terminal=True, width=60, chat_id=LONG_ID)
    assert text.splitlines()[1].startswith(LONG_ID + "  +14155550100")
    assert "…" not in text


def test_piped_tables_are_plain_aligned_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _render(monkeypatch, capsys, terminal=False, width=40, chat_id=LONG_ID)
    lines = text.splitlines()
    assert lines[0].split() == ["CHAT_ID", "LINE", "STATUS", "NOTE", "NEXT"]
    assert lines[1].startswith(LONG_ID + "  +14155550100  active")
    assert lines[1].endswith("a rather long note that may fold  -")
    assert lines[0].index("LINE") == lines[1].index("+14155550100")
    assert len(lines) == 2, "no title, no folding"


def test_version_answers_without_loading_the_commands() -> None:
    probe = (
        "import sys\n"
        "sys.argv = ['share-scheduler', '--version']\n"
        "from scheduler.cli import main\n"
        "main()\n"
        "heavy = [m for m in ('sqlalchemy', 'httpx', 'structlog', 'scheduler.config')"
        " if m in sys.modules]\n"
        "print('loaded:', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.splitlines() == [f"share-scheduler {__version__}", "loaded: []"]
