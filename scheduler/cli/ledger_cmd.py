"""``share-scheduler ledger list|show|actions``: what the ledger knows, for people and scripts."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler import clock
from scheduler.cli.args import ChatIdArgument
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    LimitOption,
    LineFilterOption,
    OutputFormat,
    OutputOption,
    StatusFilterOption,
    check_status,
    fmt_age,
    out,
    print_fields,
    print_table,
)
from scheduler.cli.context import CommandContext
from scheduler.core.chat import AttemptRecord, ChatRecord
from scheduler.ledger import queries
from scheduler.ledger.engine import Ledger
from scheduler.ledger.operator_log import ActionKind, OperatorAction, list_operator_actions

# The JSON keys of `ledger list`, as scripts know them; wide output and JSON add WIDE_COLUMNS.
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
WIDE_COLUMNS = [
    "is_group",
    "recipients",
    "last_outbound_at",
    "last_inbound_at",
    "not_before",
    "claimed_by",
    "last_error",
]
# What fits 80 columns beside a 36-character chat id: times as ages ("3h", "in 21h").
TABLE_COLUMNS = ["chat_id", "line", "status", "shared", "next"]


def list_(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    due: Annotated[bool, typer.Option("--due", help="Only chats due now.")] = False,
    line: LineFilterOption = None,
    status: StatusFilterOption = None,
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
    limit: LimitOption = 100,
    output: OutputOption = None,
    json: JsonOption = False,
) -> None:
    """List chats with their sharing state."""
    ctx = CommandContext.of(config, database_url, output=output, json=json)
    check_status(status)
    shared_since = None
    if shared_today:
        from scheduler.ledger.stats import day_start, report_zone

        zone = report_zone(ctx.schedule()[0].sharing)
        shared_since = day_start(clock.now().astimezone(zone).date(), zone)
    f = queries.ChatFilter(
        due_at=clock.now() if due else None,
        line=line,
        status=status,
        shared_since=shared_since,
        never_shared=never_shared,
        limit=limit,
    )
    rows = ctx.on_ledger(lambda led: queries.list_chats(led, f))
    if ctx.show_data([{k: getattr(r, k) for k in CHAT_COLUMNS + WIDE_COLUMNS} for r in rows]):
        return
    if ctx.output == OutputFormat.wide:
        columns = CHAT_COLUMNS + WIDE_COLUMNS
        print_table(f"{len(rows)} chats", columns, [[getattr(r, c) for c in columns] for r in rows])
        return
    now = clock.now()
    print_table(
        f"{len(rows)} chats (shared: since the last share; next: until the next)",
        TABLE_COLUMNS,
        [
            [
                r.chat_id,
                r.line,
                r.status,
                fmt_age(r.last_shared_at, now),
                fmt_age(r.next_share_at, now) if r.next_share_at else "never",
            ]
            for r in rows
        ],
    )


ATTEMPT_COLUMNS = ["id", "started_at", "outcome", "http_status", "error_code", "tries", "forced"]
ATTEMPT_WIDE = ["finished_at", "latency_ms", "instance", "trace_id", "error_message"]


def show(
    chat_id: ChatIdArgument,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = None,
    json: JsonOption = False,
) -> None:
    """One chat, its share attempts and the operator actions on it."""
    ctx = CommandContext.of(config, database_url, output=output, json=json)

    async def work(
        led: Ledger,
    ) -> tuple[ChatRecord, list[AttemptRecord], list[OperatorAction]]:
        found = await queries.resolve_chat_id(led, chat_id)
        chat, history = await queries.get_chat(led, found)
        return chat, history, await list_operator_actions(led, target=found, limit=1000)

    chat, history, actions = ctx.on_ledger(work)
    if ctx.show_data(
        {
            "chat": chat.as_dict(),
            "attempts": [a.as_dict() for a in history],
            "actions": [a.as_dict() for a in actions],
        }
    ):
        return
    print_fields(f"chat {chat.chat_id}", list(chat.as_dict().items()))
    cols = ATTEMPT_COLUMNS + (ATTEMPT_WIDE if ctx.output == OutputFormat.wide else [])
    out.print()
    print_table(f"{len(history)} attempts", cols, [[getattr(a, c) for c in cols] for a in history])
    out.print()
    print_table(
        f"{len(actions)} operator actions",
        ["at", "actor", "action", "result"],
        [[a.at, a.actor, a.action, a.result] for a in reversed(actions)],
    )


def actions(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="Only actions on this chat id, line or file."),
    ] = None,
    action: Annotated[
        ActionKind | None, typer.Option("--action", help="Only this kind of action.")
    ] = None,
    limit: LimitOption = 100,
    output: OutputOption = None,
    json: JsonOption = False,
) -> None:
    """The operator's audit trail, latest first: who paused, resumed, shared now, imported."""
    ctx = CommandContext.of(config, database_url, output=output, json=json)
    found = ctx.on_ledger(
        lambda led: list_operator_actions(led, target=target, action=action, limit=limit)
    )
    if ctx.show_data([a.as_dict() for a in found]):
        return
    if ctx.output == OutputFormat.wide:
        print_table(
            f"{len(found)} operator actions",
            ["id", "at", "actor", "action", "target", "result"],
            [[a.id, a.at, a.actor, a.action, a.target, a.result] for a in found],
        )
        return
    now = clock.now()
    print_table(
        f"{len(found)} operator actions (age: how long ago)",
        ["age", "actor", "action", "target", "result"],
        [[fmt_age(a.at, now), a.actor, a.action, a.target, a.result] for a in found],
    )
