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
    OutputOption,
    err,
    fmt_time,
    load,
    output_format,
    print_data,
    print_table,
    run_on_ledger,
)
from scheduler.cli.ledger_cmd import ledger_app
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
    fmt = output_format(output, json)
    schedule, _ = load(config, database_url)
    zone = report_zone(schedule.sharing)
    result = run_on_ledger(schedule, lambda led: ledger_stats(led, now=clock.now(), zone=zone))
    if print_data(result.as_dict(), fmt):
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
    line: Annotated[str | None, typer.Option("--line", help="Only this line (E.164).")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="active, paused, opted_out, blocked, gone.")
    ] = None,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Every chat as CSV or JSON lines, streamed page by page in bounded memory."""
    if status is not None and status not in set(ChatStatus):
        raise typer.BadParameter(
            f"{status!r} is not a chat status ({', '.join(ChatStatus)})", param_hint="--status"
        )
    schedule, _ = load(config, database_url)
    chat_filter = queries.ChatFilter(line=line, status=status, limit=None)

    def write(out: TextIO) -> int:
        return run_on_ledger(
            schedule,
            lambda led: export_chats(led, out, fmt=fmt.value, chat_filter=chat_filter),
        )

    if output is None:
        count = write(sys.stdout)
    else:
        with output.open("w", newline="", encoding="utf-8") as fh:
            count = write(fh)
    err.print(f"exported {count} chats as {fmt.value}" + (f" to {output}" if output else ""))


def register(_app: typer.Typer) -> None:
    ledger_app.command("stats")(stats)
    ledger_app.command("export")(export)
