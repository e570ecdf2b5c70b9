"""Options and output helpers shared by every command."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from scheduler.config import CONFIG_ENV, Schedule, Secrets, load_schedule
from scheduler.errors import ConfigError, ConfigProblem
from scheduler.ledger import schema
from scheduler.ledger.engine import Ledger

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar=CONFIG_ENV,
        help="The schedule file (YAML). Also from $SHARE_SCHEDULER_CONFIG.",
        show_default=False,
    ),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="SHARE_SCHEDULER_DATABASE_URL",
        help="Override the schedule's database.url (sqlite:///path or postgresql://...).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def load(
    config: Path | None, database_url: str | None = None, *, require_secrets: bool = False
) -> tuple[Schedule, Secrets]:
    if config is None:
        if database_url is None:
            raise ConfigError(
                "(no schedule file)",
                [ConfigProblem("", f"give --config FILE or set {CONFIG_ENV}")],
            )
        # Database-only commands can run from a URL alone.
        from scheduler.config import parse_schedule, resolve_secrets

        schedule = parse_schedule({"database": {"url": database_url}}, "--database-url")
        return schedule, resolve_secrets(schedule, os.environ)[0]
    return load_schedule(config, require_secrets=require_secrets, database_url=database_url)


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(jsonable(value), indent=2, sort_keys=False))


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[fmt_time(v) if isinstance(v, datetime) else str(v) for v in row])
    out.print(table)


def run_on_ledger(schedule: Schedule, work: Callable[[Ledger], Awaitable[T]]) -> T:
    """Run ``work`` on the schedule's ledger, refusing an out-of-date schema (exit 3)."""

    async def _run() -> T:
        ledger = Ledger.from_config(schedule.database)
        try:
            await schema.ensure_current(ledger)
            return await work(ledger)
        finally:
            await ledger.dispose()

    return asyncio.run(_run())
