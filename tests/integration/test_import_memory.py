"""``ledger import`` streams: its peak RSS does not grow with the row count.

The import runs as its own process (the real command) on JSONL files of 10,000 and 60,000
rows. Holding every row and its merge (as imports once did) costs about 1.8 KB a row, some
90 MiB more for the larger file; streaming in batches costs one batch and 8-byte digests.
``python -m bench.import_rss`` measures the same at 1,000,000 rows.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bench.common import peak_rss_of

ALLOWED_GROWTH_MIB = 25


def write_rows(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            row = {
                "chat_id": f"chat-{i:08d}",
                "line": "+14155550100",
                "recipients": [f"+1212555{i % 10000:04d}"],
                "service": "iMessage",
                "first_outbound_at": "2026-01-05T10:00:00Z",
                "last_outbound_at": "2026-01-06T10:00:00Z",
            }
            out.write(json.dumps(row) + "\n")


def import_peak_mib(url: str, source: Path) -> float:
    schedule = source.with_suffix(".yaml")
    schedule.write_text(f"database: {{url: '{url}'}}\n")
    peak, _seconds = peak_rss_of(
        ["ledger", "import", str(source), "--config", str(schedule)], source.with_suffix(".hwm")
    )
    return peak


def test_import_peak_rss_does_not_grow_with_rows(sqlite_template: Path, tmp_path: Path) -> None:
    peaks = {}
    for count in (10_000, 60_000):
        db = tmp_path / f"ledger-{count}.db"
        db.write_bytes(sqlite_template.read_bytes())
        source = tmp_path / f"chats-{count}.jsonl"
        write_rows(source, count)
        peaks[count] = import_peak_mib(f"sqlite:///{db}", source)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM chats").fetchone() == (count,)
    growth = peaks[60_000] - peaks[10_000]
    print(f"import peak RSS: {peaks} MiB, growth {growth:.1f} MiB for 50,000 more rows")
    assert growth < ALLOWED_GROWTH_MIB, peaks
