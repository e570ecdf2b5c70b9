"""``share-scheduler run``: the daemon."""

from __future__ import annotations

import asyncio
import sys

import typer

from scheduler.cli.common import ConfigOption, DatabaseUrlOption
from scheduler.errors import ConfigError, ConfigProblem


def run(config: ConfigOption = None, database_url: DatabaseUrlOption = None) -> None:
    """Run the daemon: share passes, card checks, webhooks, /healthz, /readyz, /metrics."""
    from scheduler.daemon import run_daemon

    if config is None:
        raise ConfigError("(no schedule file)", [ConfigProblem("", "give --config FILE")])
    code = asyncio.run(run_daemon(config, database_url))
    sys.exit(code)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
