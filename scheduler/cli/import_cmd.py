"""``share-scheduler ledger import FILE``: chats from CSV or JSONL, row by row.

Exit 0 when every row was imported, 1 when some rows were rejected (the good ones are in,
the bad ones listed on stderr), 2 when the file as a whole cannot be used (nothing written).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from scheduler import clock
from scheduler.cli.audit import ActorOption, actor_name, record
from scheduler.cli.common import ConfigOption, DatabaseUrlOption, JsonOption, print_json
from scheduler.cli.context import CommandContext
from scheduler.core.rule import Policy
from scheduler.ingest.importer import Format, ImportReport, import_file
from scheduler.ledger.engine import Ledger
from scheduler.ledger.operator_log import ActionKind

EXIT_ROWS_REJECTED = 1


def import_(
    file: Annotated[
        Path,
        typer.Argument(help="A CSV file with a header row, or JSONL (one object per line)."),
    ],
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    fmt: Annotated[
        Format | None,
        typer.Option("--format", help="csv or jsonl (default: from the file name)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and count, write nothing.")
    ] = False,
    json: JsonOption = False,
    actor: ActorOption = None,
) -> None:
    """Import chats (chat_id, line, recipient, service, times...) from CSV or JSONL.

    The file is read twice, streamed: every row is checked first, then the good rows are
    written in batches, all in one transaction. Bad rows are listed with their line number and
    skipped. On a terminal the rows checked and written so far are shown.

    Exit 1 when any row was rejected, 2 when the file cannot be used at all.
    """
    who = actor_name(actor)
    ctx = CommandContext.of(config, database_url, json=json)
    schedule, _ = ctx.schedule_for_rule("ledger import")
    policy = Policy.from_config(schedule.sharing)

    progress = _show_progress if sys.stderr.isatty() and not json else None

    async def work(ledger: Ledger) -> ImportReport:
        report = await import_file(
            ledger, file, policy, clock.now(), fmt=fmt, dry_run=dry_run, progress=progress
        )
        if not report.dry_run:
            await record(
                ledger,
                schedule,
                actor=who,
                action=ActionKind.ledger_import,
                target=file.name,
                result=f"{report.accepted} imported, {len(report.rejected)} rejected",
            )
        return report

    report = ctx.on_ledger(work, schedule=schedule)
    if progress is not None:
        typer.echo("", err=True)
    for problem in report.rejected:
        typer.echo(f"{file}: {problem}", err=True)
    if ctx.json:
        print_json(report.as_dict())
    else:
        typer.echo(_summary(report))
    if not report.ok:
        raise typer.Exit(EXIT_ROWS_REJECTED)


def _show_progress(stage: str, rows: int) -> None:
    # One line, rewritten in place: the first pass checks every row, the second writes them.
    typer.echo(f"\r{stage} {rows:,} rows", nl=False, err=True)


def _summary(report: ImportReport) -> str:
    counts = report.counts
    verb = "would import" if report.dry_run else "imported"
    text = (
        f"{report.path}: {report.rows} rows, {verb} {report.accepted} "
        f"({counts.created} new, {counts.updated} updated, {counts.unchanged} unchanged), "
        f"rejected {len(report.rejected)}"
    )
    if report.dry_run:
        text += " (dry run: nothing written)"
    return text
