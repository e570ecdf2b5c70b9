"""``ledger export`` runs in bounded memory: its peak RSS does not grow with the row count.

The export runs as its own process (the real command) over SQLite ledgers of 12,000 and
60,000 chats and reports its peak resident set. Holding the rows would cost
well over 100 MiB more for the larger ledger; streaming keyset pages costs one page.
``python -m bench.export_rss`` measures the same at 1,000,000 chats.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.common import peak_rss_of
from scheduler.ledger.export import EXPORT_COLUMNS

ALLOWED_GROWTH_MIB = 25


def _fill(path: Path, count: int) -> None:
    stamp = "2026-03-02 13:00:00.000000"
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO chats (chat_id, line, recipients, is_group, service, first_outbound_at,"
            " last_outbound_at, share_count, status, consecutive_failures, created_at,"
            " updated_at, last_error) VALUES (?, '+14155550100', ?, 0, 'iMessage', ?, ?, 0,"
            " 'active', 0, ?, ?, ?)",
            (
                (f"chat-{i:08d}", f"+1212555{i % 10000:04d}", stamp, stamp, stamp, stamp, "x" * 200)
                for i in range(count)
            ),
        )


def _export_peak_mib(url: str, out: Path) -> float:
    # The command's own peak resident set, recorded by the child itself (see peak_rss_of).
    args = ["ledger", "export", "--format", "jsonl", "--output", str(out), "--database-url", url]
    peak, _seconds = peak_rss_of(args, out.with_suffix(".hwm"))
    return peak


def test_export_peak_rss_does_not_grow_with_rows(sqlite_template: Path, tmp_path: Path) -> None:
    peaks = {}
    for count in (12_000, 60_000):
        db = tmp_path / f"ledger-{count}.db"
        db.write_bytes(sqlite_template.read_bytes())
        _fill(db, count)
        out = tmp_path / f"export-{count}.jsonl"
        peaks[count] = _export_peak_mib(f"sqlite:///{db}", out)
        with out.open() as fh:
            first = fh.readline()
            rows = 1 + sum(1 for _ in fh)
        assert rows == count
        assert first.startswith('{"chat_id":"chat-00000000"') and all(
            f'"{c}":' in first for c in EXPORT_COLUMNS
        )
    growth = peaks[60_000] - peaks[12_000]
    print(f"peak RSS: {peaks} MiB, growth {growth:.1f} MiB for 48,000 more chats")
    assert growth < ALLOWED_GROWTH_MIB, peaks
