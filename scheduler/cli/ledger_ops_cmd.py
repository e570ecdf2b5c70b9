"""``share-scheduler ledger stats|export``."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer

from scheduler import clock
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    LineFilterOption,
    OutputOption,
    StatusFilterOption,
    check_status,
    err,
    fmt_time,
    print_table,
)
from scheduler.cli.context import CommandContext
from scheduler.core.status import ChatStatus
from scheduler.ledger import queries
from scheduler.ledger.export import export_chats
from scheduler.ledger.stats import LineStats, ledger_stats, report_zone


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def _column(s: LineStats) -> list[object]:
    statuses = [s.by_status.get(status.value, 0) for status in ChatStatus]
    return [
        s.card_state or "-",
        ", ".join(s.states()) or ("-" if s.line is None else "sharing"),
        s.chats,
        *statuses,
        ", ".join(f"{k} {v}" for k, v in sorted(s.by_service.items())) or "-",
        s.shared_today,
        s.shared_yesterday,
        s.due_now,
        fmt_time(s.next_due_at),
        s.attempts_24h.get("ambiguous", 0),
        s.attempts_24h.get("failed", 0),
        ", ".join(f"{k} {v}" for k, v in sorted(s.attempts_24h.items())) or "-",
    ]


_ROWS = [
    "card",
    "state",
    "chats",
    *(f"  {status.value}" for status in ChatStatus),
    "services",
    "shared today",
    "shared yesterday",
    "due now",
    "next due",
    "ambiguous 24h",
    "failed 24h",
    "attempts 24h",
]


def stats(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = None,
    json: JsonOption = False,
) -> None:
    """The ledger at a glance, per line and in total.

    Each line's card and state (sharing, paused), chats by status and service, shares today
    and yesterday, due now, next due, and the last 24 h's attempts by outcome (ambiguous,
    failed...)."""
    ctx = CommandContext.of(config, database_url, output=output, json=json)
    schedule, _ = ctx.schedule()
    zone = report_zone(schedule.sharing)
    result = ctx.on_ledger(
        lambda led: ledger_stats(led, now=clock.now(), zone=zone), schedule=schedule
    )
    if ctx.show_data(result.as_dict()):
        return
    # One column per line: the figures read down, and many lines still fit a terminal.
    columns = [_column(s) for s in result.lines] + [_column(result.total)]
    print_table(
        f"ledger on {result.today} ({result.zone})",
        ["", *(s.line or "(no line)" for s in result.lines), "total"],
        [[name, *(col[i] for col in columns)] for i, name in enumerate(_ROWS)],
    )


def export(
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="csv (with a header row) or jsonl.")
    ] = Format.csv,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file instead of stdout.", dir_okay=False
        ),
    ] = None,
    line: LineFilterOption = None,
    status: StatusFilterOption = None,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Every chat as CSV or JSON lines, streamed page by page in bounded memory."""
    check_status(status)
    ctx = CommandContext.of(config, database_url)
    schedule, _ = ctx.schedule()
    chat_filter = queries.ChatFilter(line=line, status=status, limit=None)

    def write(out: TextIO) -> int:
        return ctx.on_ledger(
            lambda led: export_chats(led, out, fmt=fmt.value, chat_filter=chat_filter),
            schedule=schedule,
        )

    if output is None:
        count = write(sys.stdout)
    else:
        with output.open("w", newline="", encoding="utf-8") as fh:
            count = write(fh)
    err.print(f"exported {count} chats as {fmt.value}" + (f" to {output}" if output else ""))
