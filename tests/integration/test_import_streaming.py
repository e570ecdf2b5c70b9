"""``ledger import`` in two streaming passes: hostile lines, repeats across batches, dry runs."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from scheduler import clock
from scheduler.ingest.importer import import_file
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats
from tests.factories import policy

NOW = clock.now()
LINE = "+14155550100"


def _row(chat_id: str, n: int) -> str:
    return json.dumps(
        {
            "chat_id": chat_id,
            "line": LINE,
            "recipient": f"+1212555{n:04d}",
            "first_outbound_at": "2026-01-05T10:00:00Z",
        }
    )


async def _ids(ledger: Ledger) -> list[str]:
    async with ledger.read() as conn:
        return sorted((await conn.execute(sa.select(chats.c.chat_id))).scalars())


async def test_a_deeply_nested_line_is_a_row_error_with_its_line_number(
    ledger: Ledger, tmp_path: Path
) -> None:
    source = tmp_path / "chats.jsonl"
    source.write_text(
        "\n".join([_row("c-1", 1), "[" * 100_000 + "]" * 100_000, _row("c-2", 2)]) + "\n"
    )
    report = await import_file(ledger, source, policy(), NOW)
    assert [str(p) for p in report.rejected] == ["line 2: the JSON nests too deeply"]
    assert await _ids(ledger) == ["c-1", "c-2"]


async def test_repeats_across_batches_are_named_with_the_first_line(
    ledger: Ledger, tmp_path: Path
) -> None:
    source = tmp_path / "chats.jsonl"
    ids = ["a", "b", "c", "a", "d", "e", "b"]
    source.write_text("".join(_row(c, i) + "\n" for i, c in enumerate(ids)))
    progress: list[tuple[str, int]] = []
    report = await import_file(
        ledger, source, policy(), NOW, batch=2, progress=lambda s, n: progress.append((s, n))
    )
    assert [str(p) for p in report.rejected] == [
        "line 4: chat_id 'a' was already given on line 1",
        "line 7: chat_id 'b' was already given on line 2",
    ]
    assert (report.rows, report.accepted, report.counts.created) == (7, 5, 5)
    assert await _ids(ledger) == ["a", "b", "c", "d", "e"]
    assert ("written", 4) in progress


async def test_a_dry_run_counts_in_batches_and_writes_nothing(
    ledger: Ledger, tmp_path: Path
) -> None:
    source = tmp_path / "chats.jsonl"
    source.write_text("".join(_row(f"c-{i}", i) + "\n" for i in range(9)))
    report = await import_file(ledger, source, policy(), NOW, dry_run=True, batch=4)
    assert report.counts.created == 9
    assert await _ids(ledger) == []
