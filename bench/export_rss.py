"""Memory: peak RSS of ``share-scheduler ledger export`` over ledgers of growing size.

    python -m bench.export_rss [--chats 1000000] [--database sqlite] [--format csv]

Each size gets a fresh bulk-loaded ledger; the export runs as its own process writing to a
file and reports its own peak resident set (VmHWM) at exit. Bounded memory shows as a peak
that does not grow with the row count. Times are printed for information only.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import fill_ledger, ledger_url, peak_rss_of, table


def export_peak(url: str, fmt: str, out: Path) -> tuple[float, int, float]:
    """Run one export; return (peak RSS in MiB, rows written, seconds)."""
    peak, seconds = peak_rss_of(
        ["ledger", "export", "--format", fmt, "--output", str(out), "--database-url", url],
        out.with_suffix(".hwm"),
    )
    with out.open("rb") as fh:
        rows = sum(1 for _ in fh) - (1 if fmt == "csv" else 0)
    return peak, rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=1_000_000)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--format", default="csv", choices=["csv", "jsonl"])
    args = parser.parse_args()
    sizes = sorted({1_000, args.chats // 10, args.chats} - {0})
    results = []
    for size in sizes:
        with ledger_url(args.database) as url, tempfile.TemporaryDirectory() as tmp:
            ids = [f"chat-{i:09d}" for i in range(size)]
            fill_ledger(url, ids, set(), datetime.now(UTC))
            out = Path(tmp) / f"export.{args.format}"
            peak, rows, seconds = export_peak(url, args.format, out)
            if rows != size:
                raise RuntimeError(f"exported {rows} rows of {size}")
            results.append(
                [size, args.database, args.format, peak, out.stat().st_size / 2**20, seconds]
            )
    table(
        "ledger export: peak RSS of the exporting process",
        ["chats", "database", "format", "peak RSS MiB", "output MiB", "seconds"],
        results,
    )
    print(
        f"\nsummary: ledger export peak RSS {results[-1][3]:.0f} MiB at {sizes[-1]} chats"
        f" ({results[0][3]:.0f} MiB at {sizes[0]})"
    )


if __name__ == "__main__":
    main()
