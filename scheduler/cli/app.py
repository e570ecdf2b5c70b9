"""The root command: every sub-command registered here, and one-line errors with a non-zero exit.

The sub-command modules load only after ``--version`` is answered (they import SQLAlchemy,
httpx...): :func:`_register` imports them and adds their commands, in the order ``--help``
lists them.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from scheduler import __version__
from scheduler.errors import ConfigError, ShareSchedulerError

app = typer.Typer(
    name="share-scheduler",
    help="Shares each iMessage chat's Linq contact card once a day: daemon, ledger and tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"share-scheduler {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    from scheduler.cli.context import ROOT

    ROOT.verbose = verbose or bool(os.environ.get("SHARE_SCHEDULER_DEBUG"))


_registered = False


def _register() -> None:
    """Add every sub-command to :data:`app` (once: tests call this again)."""
    global _registered
    if _registered:
        return
    _registered = True
    from scheduler.cli import (
        backfill_cmd,
        cards_cmd,
        chat_cmd,
        config_cmd,
        db_cmd,
        demo_cmd,
        import_cmd,
        ledger_cmd,
        ledger_ops_cmd,
        ops_cmd,
        run_cmd,
        share_cmd,
        sim_cmd,
        webhooks_cmd,
    )

    app.add_typer(config_cmd.config_app, name="config")
    app.add_typer(db_cmd.db_app, name="db")
    app.add_typer(sim_cmd.sim_app, name="sim")
    ledger = ledger_cmd.ledger_app
    ledger.command("stats")(ledger_ops_cmd.stats)
    ledger.command("export")(ledger_ops_cmd.export)
    ledger.command("import")(import_cmd.import_)
    app.add_typer(ledger, name="ledger")
    app.command("run")(run_cmd.run)
    app.command("demo")(demo_cmd.demo)
    app.add_typer(chat_cmd.chat_app, name="chat")
    app.add_typer(share_cmd.share_app, name="share")
    app.command("plan")(ops_cmd.plan)
    app.command("doctor")(ops_cmd.doctor)
    app.add_typer(cards_cmd.cards_app, name="cards")
    app.add_typer(cards_cmd.line_app, name="line")
    app.command("backfill")(backfill_cmd.backfill)
    app.add_typer(webhooks_cmd.webhooks_app, name="webhooks")


def _verbose() -> bool:
    from scheduler.cli.context import ROOT

    return ROOT.verbose


def redact_text(text: str) -> str:
    # structlog and the rest of the logging setup load only when an error is shown.
    from scheduler.logs import redact_text as redact

    return redact(text)


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        # Answered before the sub-commands (and SQLAlchemy, httpx...) are imported.
        typer.echo(f"share-scheduler {__version__}")
        return
    _register()
    try:
        # Outside standalone mode click returns a command's typer.Exit code instead of
        # raising it: pass it on, or `db current` and `doctor` would exit 0 on failure.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"{exc.source}: {problem}", err=True)
        sys.exit(exc.exit_code)
    except ShareSchedulerError as exc:
        if _verbose():
            traceback.print_exc()
        typer.echo(f"error: {redact_text(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and the unexpected
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        # Typer ships its own copy of click: its usage errors are not click's classes.
        show = getattr(exc, "show", None)
        if isinstance(exc, typer.TyperException) and callable(show):
            show()
            sys.exit(int(getattr(exc, "exit_code", 2)))
        if _verbose():
            traceback.print_exc()
        typer.echo(f"error: {type(exc).__name__}: {redact_text(str(exc))}", err=True)
        typer.echo("(run with -v for the traceback)", err=True)
        sys.exit(1)
