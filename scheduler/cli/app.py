"""The root command: every sub-command registered here, and one-line errors with a non-zero exit.

The sub-command modules load only after ``--version`` is answered (they import SQLAlchemy,
httpx...): :func:`_register` imports them and adds their commands, in the order ``--help``
lists them, and only the one the command line names when it names one: ``run`` (the daemon)
loads no other command's code.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
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
    from scheduler.cli.options import ROOT

    ROOT.verbose = verbose or bool(os.environ.get("SHARE_SCHEDULER_DEBUG"))


_registered: set[str] = set()


def _register_config() -> None:
    from scheduler.cli import config_cmd

    config = _group(
        "config", "Validate the schedule file; print its reference.", no_args_is_help=True
    )
    config.command("check")(config_cmd.check)
    config.command("reference")(config_cmd.reference)


def _register_db() -> None:
    from scheduler.cli import db_cmd

    db = _group("db", "Ledger database schema.", no_args_is_help=True)
    db.command("upgrade")(db_cmd.upgrade)
    db.command("downgrade")(db_cmd.downgrade)
    db.command("current")(db_cmd.current)


def _register_sim() -> None:
    from scheduler.cli import sim_cmd

    app.add_typer(sim_cmd.sim_app, name="sim")


def _register_ledger() -> None:
    from scheduler.cli import import_cmd, ledger_cmd, ledger_ops_cmd

    ledger = _group("ledger", "Inspect the share ledger.", no_args_is_help=True)
    ledger.command("list")(ledger_cmd.list_)
    ledger.command("show")(ledger_cmd.show)
    ledger.command("actions")(ledger_cmd.actions)
    ledger.command("stats")(ledger_ops_cmd.stats)
    ledger.command("export")(ledger_ops_cmd.export)
    ledger.command("import")(import_cmd.import_)


def _register_run() -> None:
    from scheduler.cli import run_cmd

    app.command("run")(run_cmd.run)


def _register_demo() -> None:
    from scheduler.cli import demo_cmd

    app.command("demo")(demo_cmd.demo)


def _register_chat() -> None:
    from scheduler.cli import chat_cmd

    chat = _group("chat", "Pause or resume one chat's sharing.", no_args_is_help=True)
    chat.command("pause")(chat_cmd.pause)
    chat.command("resume")(chat_cmd.resume)


def _register_share() -> None:
    from scheduler.cli import share_cmd

    share = _group("share", "Share a contact card on request.", no_args_is_help=True)
    share.command("now")(share_cmd.now)


def _register_plan() -> None:
    from scheduler.cli import ops_cmd

    app.command("plan")(ops_cmd.plan)


def _register_doctor() -> None:
    from scheduler.cli import ops_cmd

    app.command("doctor")(ops_cmd.doctor)


def _register_cards() -> None:
    from scheduler.cli import cards_cmd

    cards = _group("cards", "Contact cards: what each line should carry and what it does.")
    cards.command("status")(cards_cmd.status)
    cards.command("sync")(cards_cmd.sync)


def _register_line() -> None:
    from scheduler.cli import cards_cmd

    line = _group("line", "Pause or resume sharing for one of our numbers.")
    line.command("pause")(cards_cmd.pause)
    line.command("resume")(cards_cmd.resume)


def _register_backfill() -> None:
    from scheduler.cli import backfill_cmd

    app.command("backfill")(backfill_cmd.backfill)


def _register_webhooks() -> None:
    from scheduler.cli import webhooks_cmd

    webhooks = _group("webhooks", "Linq webhook subscriptions: where Linq sends the daemon events.")
    webhooks.command("list")(webhooks_cmd.list_subscriptions)
    webhooks.command("ensure")(webhooks_cmd.ensure)


# Every top-level command or group, in the order ``--help`` lists them. Each one imports its
# own modules: the daemon (``run``) loads none of the other commands' code (the simulator,
# the export and import, doctor, plan, rich tables...).
_COMMANDS: dict[str, Callable[[], None]] = {
    "config": _register_config,
    "db": _register_db,
    "sim": _register_sim,
    "ledger": _register_ledger,
    "run": _register_run,
    "demo": _register_demo,
    "chat": _register_chat,
    "share": _register_share,
    "plan": _register_plan,
    "doctor": _register_doctor,
    "cards": _register_cards,
    "line": _register_line,
    "backfill": _register_backfill,
    "webhooks": _register_webhooks,
}


def _register(only: str | None = None) -> None:
    """Add the sub-command ``only`` to :data:`app`, or every one (once each: tests call this
    again)."""
    for name, register in _COMMANDS.items():
        if (only is None or name == only) and name not in _registered:
            _registered.add(name)
            register()


def command_named(args: Sequence[str]) -> str | None:
    """The sub-command ``args`` (the command line after the program) runs, when it names one;
    None for ``--help``, no command or an unknown one (they need every command)."""
    for arg in args:
        if arg in ("-v", "--verbose"):
            continue
        return arg if arg in _COMMANDS else None
    return None


def _group(name: str, help: str, *, no_args_is_help: bool = False) -> typer.Typer:
    """A sub-command group of :data:`app`, its commands added by the caller."""
    group = typer.Typer(help=help, no_args_is_help=no_args_is_help)
    app.add_typer(group, name=name)
    return group


def _verbose() -> bool:
    from scheduler.cli.options import ROOT

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
    _register(command_named(sys.argv[1:]))
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
