"""``share-scheduler db upgrade|downgrade|current``."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler.cli.common import ConfigOption, DatabaseUrlOption, JsonOption, print_json
from scheduler.cli.context import CommandContext
from scheduler.ledger import schema


def _report(done: str, before: str | None, after: str | None) -> None:
    if before == after:
        typer.echo(f"ledger already at {after or 'empty'}")
    else:
        typer.echo(f"ledger {done} from {before or 'empty'} to {after or 'empty'}")


def upgrade(
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, revision: str = "head"
) -> None:
    """Create or migrate the ledger schema to the latest revision (safe from many replicas)."""
    # The one command besides `run` that may create the ledger.
    before, after = CommandContext.of(config, database_url).on_ledger(
        lambda led: schema.upgrade(led, revision), any_schema=True, create_missing=True
    )
    _report("upgraded", before, after)


def downgrade(
    revision: Annotated[
        str,
        typer.Argument(help="The revision to step back to: -1 (one step, the default) or base."),
    ] = "-1",
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Step the ledger schema back, to run an older version (what it drops is lost)."""
    before, after = CommandContext.of(config, database_url).on_ledger(
        lambda led: schema.downgrade(led, revision), any_schema=True
    )
    _report("downgraded", before, after)


def current(
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, json: JsonOption = False
) -> None:
    """Show the ledger's schema revision and whether it is the latest. Exit 3 when not."""
    ctx = CommandContext.of(config, database_url, json=json)
    rev = ctx.on_ledger(schema.current_revision, any_schema=True)
    # A ledger migrated by a newer version: exit 3 naming both revisions.
    schema.check_known(rev)
    head = schema.head_revision()
    if ctx.json:
        print_json({"current": rev, "head": head, "up_to_date": rev == head})
    else:
        state = "up to date" if rev == head else f"behind (latest is {head})"
        typer.echo(f"{rev or 'empty'} ({state})")
    if rev != head:
        raise typer.Exit(3)
