"""``share-scheduler config check|reference``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scheduler.cli.common import ConfigOption
from scheduler.config import load_schedule
from scheduler.errors import ConfigError, ConfigProblem


def check(
    file: Annotated[
        Path | None, typer.Argument(help="The schedule file.", show_default=False)
    ] = None,
    config: ConfigOption = None,
    skip_secrets: Annotated[
        bool,
        typer.Option(
            "--skip-secrets", help="Do not require the secret env vars (build-time checks)."
        ),
    ] = False,
) -> None:
    """Exit 0 and print `ok`, or exit 2 with one `field.path: problem` line per mistake."""
    path = file or config
    if path is None:
        raise ConfigError("(no schedule file)", [ConfigProblem("", "give FILE or --config FILE")])
    load_schedule(path, require_secrets=not skip_secrets)
    typer.echo("ok")


def reference(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file instead of stdout.", dir_okay=False
        ),
    ] = None,
) -> None:
    """Every key of the schedule file with its type, default and description (Markdown).

    The source of docs/configuration.md: share-scheduler config reference -o docs/configuration.md
    """
    from scheduler.config_reference import render_reference

    text = render_reference()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
