"""``share-scheduler chat pause|resume CHAT_ID``."""

from __future__ import annotations

import typer

from scheduler import clock
from scheduler.cli.args import ChatIdArgument
from scheduler.cli.audit import ActorOption, actor_name, record
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    print_json,
    print_table,
    run_on_ledger,
)
from scheduler.cli.ops_common import load_for_rule
from scheduler.core.rule import Policy
from scheduler.ledger.chat_ops import StatusChange, set_chat_paused
from scheduler.ledger.engine import Ledger
from scheduler.ledger.operator_log import ActionKind
from scheduler.ledger.queries import resolve_chat_id

chat_app = typer.Typer(help="Pause or resume one chat's sharing.", no_args_is_help=True)

ChatId = ChatIdArgument


def _change(
    chat_id: str, paused: bool, config: ConfigOption, database_url: str | None, actor: str | None
) -> StatusChange:
    verb = "pause" if paused else "resume"
    who = actor_name(actor)
    schedule, _ = load_for_rule(config, database_url, what=f"chat {verb}")
    policy = Policy.from_config(schedule.sharing)

    async def work(ledger: Ledger) -> StatusChange:
        found = await resolve_chat_id(ledger, chat_id)
        change = await set_chat_paused(ledger, found, paused=paused, policy=policy, now=clock.now())
        await record(
            ledger,
            schedule,
            actor=who,
            action=ActionKind.chat_pause if paused else ActionKind.chat_resume,
            target=found,
            result=f"{change.before} -> {change.after}"
            if change.changed
            else f"already {change.after}",
        )
        return change

    return run_on_ledger(schedule, work)


def _show(change: StatusChange, json: bool) -> None:
    if json:
        print_json(change.as_dict())
        return
    what = f"{change.before} -> {change.after}" if change.changed else f"already {change.after}"
    print_table(
        None,
        ["chat_id", "status", "next_share_at"],
        [[change.chat_id, what, change.next_share_at or "-"]],
    )


@chat_app.command("pause")
def pause(
    chat_id: ChatId,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
    actor: ActorOption = None,
) -> None:
    """Stop sharing into this chat until it is resumed (an active chat only)."""
    _show(_change(chat_id, True, config, database_url, actor), json)


@chat_app.command("resume")
def resume(
    chat_id: ChatId,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
    actor: ActorOption = None,
) -> None:
    """Share into this paused chat again; its next share is recomputed by the rule."""
    _show(_change(chat_id, False, config, database_url, actor), json)


def register(app: typer.Typer) -> None:
    app.add_typer(chat_app, name="chat")
