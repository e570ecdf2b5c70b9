"""``ledger export``: every chat as CSV or JSON lines, streamed in keyset pages.

Memory stays bounded by one page whatever the ledger's size: rows are written as they are
read and nothing accumulates. Timestamps are ISO-8601 UTC; empty values are empty CSV cells
and JSON nulls.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TextIO

from scheduler.ledger import queries
from scheduler.ledger.engine import Ledger

__all__ = ["EXPORT_COLUMNS", "ExportFormat", "export_chats"]

ExportFormat = Literal["csv", "jsonl"]

# The chat's facts and sharing state; lease columns are transient and left out.
EXPORT_COLUMNS = [
    "chat_id",
    "line",
    "recipients",
    "is_group",
    "service",
    "status",
    "first_outbound_at",
    "last_outbound_at",
    "last_inbound_at",
    "last_shared_at",
    "share_count",
    "next_share_at",
    "not_before",
    "consecutive_failures",
    "last_error",
    "created_at",
    "updated_at",
]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _plain(value)


async def export_chats(
    ledger: Ledger,
    out: TextIO,
    *,
    fmt: ExportFormat,
    chat_filter: queries.ChatFilter | None = None,
    batch: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the matching chats to ``out``; return how many were written."""
    f = chat_filter or queries.ChatFilter(limit=None)
    written = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
    async for row in queries.stream_chats(ledger, f, batch=batch):
        if writer is not None:
            writer.writerow([_csv_cell(row[c]) for c in EXPORT_COLUMNS])
        else:
            record = {c: _plain(row[c]) for c in EXPORT_COLUMNS}
            record["is_group"] = bool(record["is_group"])
            out.write(json.dumps(record, separators=(",", ":")))
            out.write("\n")
        written += 1
        if progress is not None and written % batch == 0:
            progress(written)
    out.flush()
    return written
