"""``share-scheduler chat pause|resume CHAT_ID``."""

from __future__ import annotations

import typer

from scheduler import clock
from scheduler.cli.args import ChatIdArgument
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    print_json,
    print_table,
    run_on_ledger,
)
from scheduler.cli.ops_common import load_for_rule
from scheduler.ledger.chat_ops import StatusChange, set_chat_paused
from scheduler.rule import Policy

chat_app = typer.Typer(help="Pause or resume one chat's sharing.", no_args_is_help=True)

ChatId = ChatIdArgument


def _change(
    chat_id: str, paused: bool, config: ConfigOption, database_url: str | None
) -> StatusChange:
    verb = "pause" if paused else "resume"
    schedule, _ = load_for_rule(config, database_url, what=f"chat {verb}")
    policy = Policy.from_config(schedule.sharing)
    return run_on_ledger(
        schedule,
        lambda led: set_chat_paused(led, chat_id, paused=paused, policy=policy, now=clock.now()),
    )


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
) -> None:
    """Stop sharing into this chat until it is resumed (an active chat only)."""
    _show(_change(chat_id, True, config, database_url), json)


@chat_app.command("resume")
def resume(
    chat_id: ChatId,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
) -> None:
    """Share into this paused chat again; its next share is recomputed by the rule."""
    _show(_change(chat_id, False, config, database_url), json)


def register(app: typer.Typer) -> None:
    app.add_typer(chat_app, name="chat")
