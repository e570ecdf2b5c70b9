"""``share-scheduler backfill``: catch up on missed webhooks from Linq's chat listings."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from scheduler import clock
from scheduler.cli.args import phone_number_callback
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    print_json,
    print_table,
)
from scheduler.cli.context import CommandContext
from scheduler.core.rule import Policy
from scheduler.ingest.backfill import (
    BackfillOptions,
    BackfillReport,
    LineReport,
    lines_to_backfill,
    run_backfill,
)
from scheduler.ledger.engine import Ledger
from scheduler.linq.client import LinqClient

EXIT_INCOMPLETE = 1


_line = phone_number_callback


def parse_since(value: str | None) -> datetime | None:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO-8601 time (UTC unless it carries an offset)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
        parsed = datetime.fromisoformat(iso)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD) or an ISO-8601 time"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _since(value: str | None) -> str | None:
    parsed = parse_since(value)
    if parsed is not None and parsed > clock.now():
        raise typer.BadParameter(f"{value!r} is in the future: no chat could qualify")
    return value


class _Bar:
    """One spinning bar per line: how many chats and pages it has gone through."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[line]}"),
            BarColumn(),
            TextColumn("{task.fields[chats]} chats, {task.fields[pages]} pages"),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, report: LineReport) -> None:
        task = self.tasks.get(report.line)
        if task is None:
            task = self.progress.add_task(
                "backfill", total=None, line=report.line, chats=0, pages=0, state=""
            )
            self.tasks[report.line] = task
        done = report.completed
        self.progress.update(
            task,
            chats=report.chats_seen,
            pages=report.pages,
            state="done" if done else ("resumed" if report.resumed else ""),
            total=1 if done else None,
            completed=1 if done else 0,
        )


def backfill(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    line: Annotated[
        str | None,
        typer.Option(
            "--line", help="Only this line (E.164). Default: every known line.", callback=_line
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only chats with activity on or after DATE (YYYY-MM-DD, or an ISO time).",
            callback=_since,
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Start over instead of resuming an unfinished run."),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Page through GET /v3/chats (and messages where needed) and repair the ledger.

    Resumes where an unfinished run stopped. Exit 1 when a line could not be finished.
    """
    show_bar = sys.stdout.isatty() and not json
    ctx = CommandContext.of(config, database_url, json=json)
    schedule, api_key = ctx.schedule_with_api("backfill", quiet=show_bar)
    policy = Policy.from_config(schedule.sharing)
    options = BackfillOptions.from_config(schedule.backfill)
    bar = _Bar(Console()) if show_bar else None

    async def work(ledger: Ledger) -> BackfillReport:
        scopes = [line] if line is not None else await lines_to_backfill(ledger, schedule)
        async with LinqClient.from_config(schedule.linq, api_key) as client:
            with bar.progress if bar is not None else nullcontext():
                return await run_backfill(
                    ledger,
                    client,
                    policy,
                    scopes,
                    options=options,
                    since=parse_since(since),
                    restart=restart,
                    progress=bar,
                )

    report = ctx.on_ledger(work, schedule=schedule)
    if ctx.json:
        print_json(report.as_dict())
    else:
        _print(report)
    if not report.ok:
        for r in report.lines:
            if r.error:
                typer.echo(f"{r.line}: {r.error}", err=True)
        raise typer.Exit(EXIT_INCOMPLETE)


def _print(report: BackfillReport) -> None:
    columns = [
        "line",
        "pages",
        "chats",
        "new",
        "updated",
        "unchanged",
        "message pages",
        "resumed",
        "result",
    ]
    rows: list[list[Any]] = []
    for r in report.lines:
        result = "done" if r.completed else ("failed" if r.error else "stopped")
        rows.append(
            [
                r.line,
                r.pages,
                r.chats_seen,
                r.created,
                r.updated,
                r.unchanged,
                r.message_pages,
                "yes" if r.resumed else "no",
                result,
            ]
        )
    print_table("backfill", columns, rows)
