"""Memory: peak RSS of ``share-scheduler ledger import`` over files of growing size.

    python -m bench.import_rss [--rows 1000000] [--database sqlite] [--format jsonl]

Each size gets a fresh migrated ledger and a generated file; the import runs as its own
process and reports its own peak resident set (VmHWM) at exit. Bounded memory shows as a peak
that does not grow with the row count. Times are printed for information only.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

from bench.common import ledger_url, peak_rss_of, table

FIELDS = ["chat_id", "line", "recipient", "service", "first_outbound_at", "last_outbound_at"]


def write_file(path: Path, rows: int, fmt: str) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(FIELDS)
        for i in range(rows):
            values = [
                f"chat-{i:09d}",
                f"+1415555{i % 50:04d}",
                f"+1212{i % 10_000_000:07d}",
                "iMessage",
                "2026-01-05T10:00:00Z",
                "2026-01-06T10:00:00Z",
            ]
            if writer is not None:
                writer.writerow(values)
            else:
                out.write(json.dumps(dict(zip(FIELDS, values, strict=True))) + "\n")


def import_peak(url: str, source: Path) -> tuple[float, float]:
    """Run one import; return (peak RSS in MiB, seconds)."""
    schedule = source.with_suffix(".yaml")
    schedule.write_text(json.dumps({"database": {"url": url}}))
    return peak_rss_of(
        ["ledger", "import", str(source), "--config", str(schedule)], source.with_suffix(".hwm")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--format", default="jsonl", choices=["csv", "jsonl"])
    args = parser.parse_args()
    sizes = sorted({1_000, args.rows // 10, args.rows} - {0})
    results = []
    for size in sizes:
        with ledger_url(args.database) as url, tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / f"chats.{args.format}"
            write_file(source, size, args.format)
            peak, seconds = import_peak(url, source)
            results.append(
                [size, args.database, args.format, peak, source.stat().st_size / 2**20, seconds]
            )
    table(
        "ledger import: peak RSS of the importing process",
        ["rows", "database", "format", "peak RSS MiB", "file MiB", "seconds"],
        results,
    )
    print(
        f"\nsummary: ledger import peak RSS {results[-1][3]:.0f} MiB at {sizes[-1]} rows"
        f" ({results[0][3]:.0f} MiB at {sizes[0]})"
    )


if __name__ == "__main__":
    main()
