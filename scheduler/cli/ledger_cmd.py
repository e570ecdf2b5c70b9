"""``share-scheduler ledger list|show``: what the ledger knows, for people and scripts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from scheduler import clock
from scheduler.cli.args import ChatIdArgument
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    load,
    print_json,
    print_table,
    run_on_ledger,
)
from scheduler.ledger import queries
from scheduler.ledger.engine import Ledger
from scheduler.ledger.models import ChatStatus

ledger_app = typer.Typer(help="Inspect the share ledger.", no_args_is_help=True)
T = TypeVar("T")


def with_ledger(config: Any, database_url: str | None, work: Callable[[Ledger], Awaitable[T]]) -> T:
    schedule, _ = load(config, database_url)
    return run_on_ledger(schedule, work)


CHAT_COLUMNS = [
    "chat_id",
    "line",
    "service",
    "status",
    "first_outbound_at",
    "last_shared_at",
    "share_count",
    "next_share_at",
]


@ledger_app.command("list")
def list_(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    due: Annotated[bool, typer.Option("--due", help="Only chats due now.")] = False,
    line: Annotated[str | None, typer.Option("--line", help="Only this line (E.164).")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="active, paused, opted_out, gone.")
    ] = None,
    never_shared: Annotated[
        bool, typer.Option("--never-shared", help="Only chats never shared.")
    ] = False,
    shared_today: Annotated[
        bool,
        typer.Option(
            "--shared-today",
            help="Only chats shared today (calendar day in the schedule's zone, or its "
            "fallback zone when windows follow lines or recipients).",
        ),
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")] = 100,
    json: JsonOption = False,
) -> None:
    """List chats with their sharing state."""
    if status is not None and status not in set(ChatStatus):
        raise typer.BadParameter(
            f"{status!r} is not a chat status ({', '.join(ChatStatus)})", param_hint="--status"
        )
    shared_since = None
    if shared_today:
        from scheduler.ledger.stats import day_start, report_zone

        zone = report_zone(load(config, database_url)[0].sharing)
        shared_since = day_start(clock.now().astimezone(zone).date(), zone)
    f = queries.ChatFilter(
        due_at=clock.now() if due else None,
        line=line,
        status=status,
        shared_since=shared_since,
        never_shared=never_shared,
        limit=limit,
    )
    rows = with_ledger(config, database_url, lambda led: queries.list_chats(led, f))
    if json:
        print_json([{k: r[k] for k in CHAT_COLUMNS} for r in rows])
        return
    print_table(
        f"{len(rows)} chats",
        CHAT_COLUMNS,
        [[r[k] if r[k] is not None else "-" for k in CHAT_COLUMNS] for r in rows],
    )


@ledger_app.command("show")
def show(
    chat_id: ChatIdArgument,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
) -> None:
    """One chat and its share attempts."""
    chat, history = with_ledger(config, database_url, lambda led: queries.get_chat(led, chat_id))
    if json:
        print_json({"chat": chat, "attempts": history})
        return
    print_table(
        f"chat {chat_id}",
        ["field", "value"],
        [[k, "-" if v is None else v] for k, v in chat.items()],
    )
    cols = [
        "id",
        "started_at",
        "finished_at",
        "outcome",
        "http_status",
        "error_code",
        "tries",
        "instance",
        "trace_id",
    ]
    print_table(
        f"{len(history)} attempts",
        cols,
        [["-" if a[c] is None else a[c] for c in cols] for a in history],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
