"""``share-scheduler share now CHAT_ID [--force]``."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler.cli.args import ChatIdArgument
from scheduler.cli.audit import ActorOption, actor_name, record
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    print_json,
    print_table,
)
from scheduler.cli.context import CommandContext
from scheduler.core.rule import Policy
from scheduler.errors import ConfigError, ConfigProblem
from scheduler.ledger.engine import Ledger
from scheduler.ledger.operator_log import ActionKind
from scheduler.ledger.queries import resolve_chat_id
from scheduler.linq.client import LinqClient
from scheduler.share.manual import ManualShare, share_now


def now(
    chat_id: ChatIdArgument,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Share even if the rule says no (already shared today, outside the window, "
            "paused). Recorded on the attempt. Opted-out and gone chats are always refused.",
        ),
    ] = False,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
    actor: ActorOption = None,
) -> None:
    """Share CHAT_ID's card now through the share pass's path; exit 1 unless it was shared."""
    ctx = CommandContext.of(config, database_url, json=json)
    schedule, secrets = ctx.schedule_for_rule("share now")
    if secrets.api_key is None:
        raise ConfigError(
            str(config),
            [ConfigProblem("linq.api_key_env", f"{schedule.linq.api_key_env} is not set")],
        )
    api_key = secrets.api_key
    policy = Policy.from_config(schedule.sharing)

    who = actor_name(actor)

    async def work(ledger: Ledger) -> ManualShare:
        found = await resolve_chat_id(ledger, chat_id)
        async with LinqClient.from_config(schedule.linq, api_key) as client:
            result = await share_now(ledger, client, schedule, policy, found, force=force)
        verdict = f"refused: {result.refused}" if result.refused else str(result.outcome)
        await record(
            ledger,
            schedule,
            actor=who,
            action=ActionKind.share_now,
            target=found,
            result=verdict + (" (forced)" if force else ""),
        )
        return result

    result = ctx.on_ledger(work, schedule=schedule)
    if ctx.json:
        print_json(result.as_dict())
    else:
        verdict = f"refused: {result.refused}" if result.refused else result.outcome
        print_table(
            f"share now {result.chat_id}",
            ["field", "value"],
            [
                ["result", verdict],
                ["line", result.line or "-"],
                ["forced", result.forced],
                ["attempt", result.attempt_id or "-"],
                ["detail", result.detail or "-"],
                ["next_share_at", result.next_share_at or "-"],
            ],
        )
    if not result.shared:
        raise typer.Exit(1)
