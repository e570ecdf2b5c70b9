"""``share-scheduler db upgrade|current``."""

from __future__ import annotations

import asyncio

import typer

from scheduler.cli.common import ConfigOption, DatabaseUrlOption, JsonOption, load, print_json
from scheduler.ledger import schema
from scheduler.ledger.engine import Ledger

db_app = typer.Typer(help="Ledger database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, revision: str = "head"
) -> None:
    """Create or migrate the ledger schema to the latest revision."""
    schedule, _ = load(config, database_url)

    async def _run() -> tuple[str | None, str | None]:
        # The one command besides `run` that may create the ledger.
        ledger = Ledger.from_config(schedule.database, create_missing=True)
        try:
            return await schema.upgrade(ledger, revision)
        finally:
            await ledger.dispose()

    before, after = asyncio.run(_run())
    if before == after:
        typer.echo(f"ledger already at {after}")
    else:
        typer.echo(f"ledger upgraded from {before or 'empty'} to {after}")


@db_app.command("current")
def current(
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, json: JsonOption = False
) -> None:
    """Show the ledger's schema revision and whether it is the latest. Exit 3 when behind."""
    schedule, _ = load(config, database_url)

    async def _run() -> str | None:
        ledger = Ledger.from_config(schedule.database)
        try:
            return await schema.current_revision(ledger)
        finally:
            await ledger.dispose()

    rev = asyncio.run(_run())
    head = schema.head_revision()
    if json:
        print_json({"current": rev, "head": head, "up_to_date": rev == head})
    else:
        state = "up to date" if rev == head else f"behind (latest is {head})"
        typer.echo(f"{rev or 'empty'} ({state})")
    if rev != head:
        raise typer.Exit(3)
