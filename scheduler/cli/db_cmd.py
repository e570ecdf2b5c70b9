"""``share-scheduler db upgrade|downgrade|current``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from scheduler.cli.common import ConfigOption, DatabaseUrlOption, JsonOption, load, print_json
from scheduler.ledger import schema
from scheduler.ledger.engine import Ledger

T = TypeVar("T")
db_app = typer.Typer(help="Ledger database schema.", no_args_is_help=True)


def _on_ledger(
    config: ConfigOption,
    database_url: DatabaseUrlOption,
    work: Callable[[Ledger], Awaitable[T]],
    *,
    create_missing: bool = False,
) -> T:
    """Run ``work`` on the ledger whatever its schema (these commands are what changes it)."""
    schedule, _ = load(config, database_url)

    async def _run() -> T:
        ledger = Ledger.from_config(schedule.database, create_missing=create_missing)
        try:
            return await work(ledger)
        finally:
            await ledger.dispose()

    return asyncio.run(_run())


def _report(done: str, before: str | None, after: str | None) -> None:
    if before == after:
        typer.echo(f"ledger already at {after or 'empty'}")
    else:
        typer.echo(f"ledger {done} from {before or 'empty'} to {after or 'empty'}")


@db_app.command("upgrade")
def upgrade(
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, revision: str = "head"
) -> None:
    """Create or migrate the ledger schema to the latest revision (safe from many replicas)."""
    # The one command besides `run` that may create the ledger.
    before, after = _on_ledger(
        config, database_url, lambda led: schema.upgrade(led, revision), create_missing=True
    )
    _report("upgraded", before, after)


@db_app.command("downgrade")
def downgrade(
    revision: Annotated[
        str,
        typer.Argument(help="The revision to step back to: -1 (one step, the default) or base."),
    ] = "-1",
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Step the ledger schema back, to run an older version (what it drops is lost)."""
    before, after = _on_ledger(config, database_url, lambda led: schema.downgrade(led, revision))
    _report("downgraded", before, after)


@db_app.command("current")
def current(
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, json: JsonOption = False
) -> None:
    """Show the ledger's schema revision and whether it is the latest. Exit 3 when not."""
    rev = _on_ledger(config, database_url, schema.current_revision)
    # A ledger migrated by a newer version: exit 3 naming both revisions.
    schema.check_known(rev)
    head = schema.head_revision()
    if json:
        print_json({"current": rev, "head": head, "up_to_date": rev == head})
    else:
        state = "up to date" if rev == head else f"behind (latest is {head})"
        typer.echo(f"{rev or 'empty'} ({state})")
    if rev != head:
        raise typer.Exit(3)
