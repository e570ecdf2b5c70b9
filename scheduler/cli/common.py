"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scheduler.cli.options import ConfigOption, DatabaseUrlOption
from scheduler.ledger.models import ChatStatus

__all__ = ["ConfigOption", "DatabaseUrlOption"]

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
LineFilterOption = Annotated[
    str | None, typer.Option("--line", help="Only this line (E.164).", show_default=False)
]
StatusFilterOption = Annotated[
    str | None, typer.Option("--status", help="active, paused, opted_out, blocked, gone.")
]
LimitOption = Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")]


def check_status(status: str | None) -> None:
    """``--status``: one of the chat statuses, or a usage error (exit 2)."""
    if status is not None and status not in set(ChatStatus):
        raise typer.BadParameter(
            f"{status!r} is not a chat status ({', '.join(ChatStatus)})", param_hint="--status"
        )


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


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


class OutputFormat(StrEnum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output",
        "-o",
        help="table (fits the terminal), wide (every column), json or yaml.",
        show_default=False,
    ),
]


def output_format(output: OutputFormat | None, json: bool) -> OutputFormat:
    """The format asked for: ``--json`` is kept as the alias of ``-o json``."""
    if json:
        if output not in (None, OutputFormat.json):
            raise typer.BadParameter(f"--json contradicts -o {output}", param_hint="--json")
        return OutputFormat.json
    return output or OutputFormat.table


def print_data(value: Any, fmt: OutputFormat) -> bool:
    """Print ``value`` as JSON or YAML when that is the format; False for table formats."""
    if fmt == OutputFormat.json:
        print_json(value)
        return True
    if fmt == OutputFormat.yaml:
        import yaml

        typer.echo(yaml.safe_dump(jsonable(value), sort_keys=False, allow_unicode=True), nl=False)
        return True
    return False


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# Columns whose values are copied into other commands: never folded, never cut.
IDENTIFIERS = frozenset({"chat_id", "line", "target", "number", "action"})


def _is_identifier(column: str) -> bool:
    return column.lower() in IDENTIFIERS or column.startswith("+")


def fmt_age(value: datetime | None, now: datetime) -> str:
    """How long ago (``5m``, ``3h``, ``2d``) or, for the future, ``in 3h``; ``now`` if due."""
    if value is None:
        return "-"
    seconds = (value - now).total_seconds()
    if 0 >= seconds > -1:
        return "now"
    span = abs(seconds)
    if span < 60:
        text = f"{span:.0f}s"
    elif span < 3600:
        text = f"{span // 60:.0f}m"
    elif span < 48 * 3600:
        text = f"{span // 3600:.0f}h"
    else:
        text = f"{span // 86400:.0f}d"
    return f"in {text}" if seconds > 0 else text


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table for people, whole whatever the width.

    On a terminal: a borderless rich table whose cells fold onto more lines when the terminal
    is narrow: no character of an id is ever cut. Piped or redirected: plain columns aligned
    with spaces, one row a line, no title and no truncation, for grep, awk and cut.
    """
    cells = [[_cell(v) for v in row] for row in rows]
    headers = [c.upper() for c in columns]
    ids = [i for i, name in enumerate(columns) if _is_identifier(name)]
    id_widths = [max([len(headers[i]), *(len(r[i]) for r in cells)]) for i in ids]
    # Each other column needs a few characters; past the terminal's width rich would crop
    # an id, so a table that cannot fit is printed plain and the terminal wraps its lines.
    needed = sum(id_widths) + 4 * (len(columns) - len(ids)) + 2 * len(columns)
    if not out.is_terminal or needed > out.width:
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        for line in [headers, *cells]:
            typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        return
    table = Table(
        title=title,
        title_justify="left",
        box=None,
        header_style="bold",
        pad_edge=False,
        padding=(0, 2, 0, 0),
    )
    id_width = dict(zip(ids, id_widths, strict=True))
    for index, header in enumerate(headers):
        if index in id_width:
            # Never narrower than its longest value: an id is copied whole or is useless.
            table.add_column(header, no_wrap=True, min_width=id_width[index])
        else:
            table.add_column(header, overflow="fold")
    for row in cells:
        table.add_row(*(escape(v) for v in row))
    out.print(table)


def print_fields(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    """One record as ``field: value`` lines (``kubectl describe``), whole at any width."""
    if out.is_terminal:
        out.print(f"[bold]{escape(title)}[/]", highlight=False)
    width = max((len(name) for name, _ in fields), default=0) + 1
    for name, value in fields:
        out.print(f"{name + ':':<{width}} {escape(_cell(value))}", highlight=False, markup=True)
