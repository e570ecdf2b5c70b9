"""The operator's CLI as real commands on real ledgers: chat ids by prefix, the audit trail of
every intervention, and listings that stay whole when piped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler import clock
from scheduler.errors import AmbiguousPrefix, NotFound
from scheduler.ledger.engine import Ledger
from scheduler.ledger.operator_log import ActionKind, list_operator_actions
from scheduler.ledger.queries import resolve_chat_id
from tests.factories import add_chats, add_line, policy

LINE = "+14155550100"
OTHER = "+14155550111"


async def _seed(ledger: Ledger) -> list[str]:
    now = clock.now()
    await add_line(ledger, LINE, now)
    await add_line(ledger, OTHER, now)
    ids = await add_chats(
        ledger, LINE, 3, now=now, first_outbound_at=now - timedelta(days=1), pol=policy()
    )
    # Two ids sharing a long prefix, and one that is a prefix of another id.
    ids += await add_chats(
        ledger,
        OTHER,
        2,
        now=now,
        first_outbound_at=now - timedelta(days=1),
        prefix="twin",
        pol=policy(),
    )
    ids += await add_chats(
        ledger,
        OTHER,
        1,
        now=now,
        first_outbound_at=now - timedelta(days=1),
        prefix="tw",
        pol=policy(),
    )
    return ids


@pytest.fixture
def config(tmp_path: Path, ledger_url: str) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": ledger_url},
                "linq": {"base_url": "http://127.0.0.1:9/api/partner"},
                "logging": {"format": "json"},
            }
        )
    )
    return path


def _cli(config: Path, *args: str, rc: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "LINQ_", "SUDO_")) and k not in ("USER", "LOGNAME")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
    )
    assert proc.returncode == rc, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


async def test_resolve_chat_id_by_unique_prefix(ledger: Ledger) -> None:
    await _seed(ledger)
    assert await resolve_chat_id(ledger, "chat-000001") == "chat-000001"
    assert await resolve_chat_id(ledger, "tw-") == "tw-000000"
    assert await resolve_chat_id(ledger, "twin-000001") == "twin-000001"
    # "tw" starts every twin too: ambiguous, the candidates in order.
    with pytest.raises(AmbiguousPrefix, match="tw-000000, twin-000000, twin-000001"):
        await resolve_chat_id(ledger, "tw")
    with pytest.raises(AmbiguousPrefix, match="twin-000000, twin-000001"):
        await resolve_chat_id(ledger, "twin-0000")
    with pytest.raises(NotFound, match="no chat 'nope'"):
        await resolve_chat_id(ledger, "nope")
    # Case matters on both databases (SQLite's LIKE would have ignored it).
    with pytest.raises(NotFound):
        await resolve_chat_id(ledger, "TWIN-000000")


async def test_ambiguous_prefix_exits_1_listing_the_candidates(
    ledger: Ledger, config: Path
) -> None:
    await _seed(ledger)
    proc = _cli(config, "ledger", "show", "twin", rc=1)
    assert "twin-000000" in proc.stderr and "twin-000001" in proc.stderr
    assert proc.stderr.count("\n") == 1, "one line"
    shown = json.loads(_cli(config, "ledger", "show", "tw-", "-o", "json").stdout)
    assert shown["chat"]["chat_id"] == "tw-000000"


async def test_every_intervention_is_recorded_with_its_actor(ledger: Ledger, config: Path) -> None:
    await _seed(ledger)
    _cli(config, "chat", "pause", "chat-000001", USER="carol")
    _cli(config, "chat", "resume", "chat-000001", USER="carol", SUDO_USER="dave")
    _cli(config, "line", "pause", OTHER, "--actor", "ops-bot")
    _cli(config, "line", "resume", OTHER, "--actor", "ops-bot")
    imported = Path(config).parent / "chats.csv"
    imported.write_text(
        "chat_id,line,recipient,service,first_outbound_at\n"
        f"imp-1,{LINE},+12125550100,iMessage,2026-01-05T10:00:00Z\n"
    )
    proc = _cli(config, "ledger", "import", str(imported), "--actor", "erin")
    assert '"event": "operator.action"' in proc.stderr
    _cli(config, "ledger", "import", str(imported), "--dry-run", "--actor", "erin")
    _cli(config, "chat", "pause", "chat-000002", "--actor", " ", rc=2)  # no one: refused
    # Refused before anything is written: nothing recorded for it.
    _cli(config, "chat", "pause", "nope", rc=1, USER="carol")

    found = await list_operator_actions(ledger)
    trail = [(a.actor, a.action, a.target, a.result) for a in reversed(found)]
    assert trail == [
        ("carol", ActionKind.chat_pause, "chat-000001", "active -> paused"),
        ("dave", ActionKind.chat_resume, "chat-000001", "paused -> active"),
        ("ops-bot", ActionKind.line_pause, OTHER, "paused, 3 chats"),
        ("ops-bot", ActionKind.line_resume, OTHER, "resumed, 3 chats"),
        ("erin", ActionKind.ledger_import, "chats.csv", "1 imported, 0 rejected"),
    ]
    listed = json.loads(_cli(config, "ledger", "actions", "-o", "json").stdout)
    assert len(listed) == 5
    assert listed[0]["action"] == "ledger.import"
    shown = json.loads(_cli(config, "ledger", "show", "chat-000001", "--json").stdout)
    assert [a["actor"] for a in shown["actions"]] == ["dave", "carol"]
    assert all("forced" in attempt for attempt in shown["attempts"])


async def test_piped_listing_keeps_ids_whole(ledger: Ledger, config: Path) -> None:
    now = clock.now()
    await add_line(ledger, LINE, now)
    long_id = "c" * 60 + "-000000"
    await add_chats(
        ledger,
        LINE,
        1,
        now=now,
        first_outbound_at=now - timedelta(days=1),
        prefix="c" * 60,
        pol=policy(),
    )
    proc = _cli(config, "ledger", "list", COLUMNS="40")
    lines = proc.stdout.splitlines()
    # Not a terminal: a header and one row a line, nothing folded, the id whole.
    assert lines[0].split() == ["CHAT_ID", "LINE", "STATUS", "SHARED", "NEXT"]
    assert len(lines) == 2
    assert lines[1].split()[0] == long_id
    wide = _cli(config, "ledger", "list", "-o", "wide", COLUMNS="40").stdout.splitlines()
    assert "FIRST_OUTBOUND_AT" in wide[0].split()
    data: list[dict[str, Any]] = yaml.safe_load(_cli(config, "ledger", "list", "-o", "yaml").stdout)
    assert data[0]["chat_id"] == long_id
    _cli(config, "ledger", "list", "-o", "xml", rc=2)
    _cli(config, "ledger", "list", "--json", "-o", "yaml", rc=2)


async def test_plan_and_stats_show_paused_lines_and_reasons(ledger: Ledger, config: Path) -> None:
    await _seed(ledger)
    _cli(config, "line", "pause", OTHER, "--actor", "ops")
    stats = json.loads(_cli(config, "ledger", "stats", "-o", "json").stdout)
    states = {s["line"]: s["states"] for s in stats["lines"]}
    assert states == {LINE: [], OTHER: ["paused"]}
    table = _cli(config, "ledger", "stats").stdout.splitlines()
    assert table[2].split() == ["state", "sharing", "paused", "-"]

    plan = json.loads(_cli(config, "plan", "--chats", "10", "-o", "json").stdout)
    assert plan["paused_lines"] == [OTHER]
    assert plan["rate"]["capacity_per_day"] > 0 and plan["rate"]["fits"] is True
    assert {c["line"] for c in plan["chats"]} == {LINE}
    assert all(c["reason"] for c in plan["chats"])
    text = _cli(config, "plan").stdout
    assert f"line {OTHER} is paused" in text
    assert "rate limit:" in text

    paused = json.loads(_cli(config, "plan", "--chat", "tw-", "-o", "json").stdout)
    assert (paused["chat_id"], paused["due"], paused["reason"]) == (
        "tw-000000",
        False,
        "line_paused",
    )
    assert paused["line_paused"] is True
    _cli(config, "plan", "--chat", "tw", rc=1)  # ambiguous
