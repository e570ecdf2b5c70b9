"""The root command's flags, and the options every command that reads the schedule takes.

Apart from :mod:`scheduler.cli.common` and :mod:`scheduler.cli.context` (rich, the output
helpers, the ledger's commands): ``run`` needs these and none of that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from scheduler.config import CONFIG_ENV


@dataclass
class RootOptions:
    """The root command's own flags, set before any sub-command runs."""

    verbose: bool = False


ROOT = RootOptions()

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
