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

    config = _group(
        "config", "Validate the schedule file; print its reference.", no_args_is_help=True
    )
    config.command("check")(config_cmd.check)
    config.command("reference")(config_cmd.reference)
    db = _group("db", "Ledger database schema.", no_args_is_help=True)
    db.command("upgrade")(db_cmd.upgrade)
    db.command("downgrade")(db_cmd.downgrade)
    db.command("current")(db_cmd.current)
    app.add_typer(sim_cmd.sim_app, name="sim")
    ledger = _group("ledger", "Inspect the share ledger.", no_args_is_help=True)
    ledger.command("list")(ledger_cmd.list_)
    ledger.command("show")(ledger_cmd.show)
    ledger.command("actions")(ledger_cmd.actions)
    ledger.command("stats")(ledger_ops_cmd.stats)
    ledger.command("export")(ledger_ops_cmd.export)
    ledger.command("import")(import_cmd.import_)
    app.command("run")(run_cmd.run)
    app.command("demo")(demo_cmd.demo)
    chat = _group("chat", "Pause or resume one chat's sharing.", no_args_is_help=True)
    chat.command("pause")(chat_cmd.pause)
    chat.command("resume")(chat_cmd.resume)
    share = _group("share", "Share a contact card on request.", no_args_is_help=True)
    share.command("now")(share_cmd.now)
    app.command("plan")(ops_cmd.plan)
    app.command("doctor")(ops_cmd.doctor)
    cards = _group("cards", "Contact cards: what each line should carry and what it does.")
    cards.command("status")(cards_cmd.status)
    cards.command("sync")(cards_cmd.sync)
    line = _group("line", "Pause or resume sharing for one of our numbers.")
    line.command("pause")(cards_cmd.pause)
    line.command("resume")(cards_cmd.resume)
    app.command("backfill")(backfill_cmd.backfill)
    webhooks = _group("webhooks", "Linq webhook subscriptions: where Linq sends the daemon events.")
    webhooks.command("list")(webhooks_cmd.list_subscriptions)
    webhooks.command("ensure")(webhooks_cmd.ensure)


def _group(name: str, help: str, *, no_args_is_help: bool = False) -> typer.Typer:
    """A sub-command group of :data:`app`, its commands added by the caller."""
    group = typer.Typer(help=help, no_args_is_help=no_args_is_help)
    app.add_typer(group, name=name)
    return group


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
