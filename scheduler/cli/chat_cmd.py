"""``share-scheduler chat pause|resume CHAT_ID``."""

from __future__ import annotations

from collections.abc import Callable

from scheduler import clock
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
from scheduler.ledger.chat_ops import StatusChange, set_chat_paused
from scheduler.ledger.engine import Ledger
from scheduler.ledger.operator_log import ActionKind
from scheduler.ledger.queries import resolve_chat_id

ChatId = ChatIdArgument


def _change(ctx: CommandContext, chat_id: str, paused: bool, actor: str | None) -> StatusChange:
    verb = "pause" if paused else "resume"
    who = actor_name(actor)
    schedule, _ = ctx.schedule_for_rule(f"chat {verb}")
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

    return ctx.on_ledger(work, schedule=schedule)


def _show(ctx: CommandContext, change: StatusChange) -> None:
    if ctx.json:
        print_json(change.as_dict())
        return
    what = f"{change.before} -> {change.after}" if change.changed else f"already {change.after}"
    print_table(
        None,
        ["chat_id", "status", "next_share_at"],
        [[change.chat_id, what, change.next_share_at or "-"]],
    )


def _command(paused: bool, doc: str) -> Callable[..., None]:
    """``chat pause`` or ``chat resume``: the same flags, the one change."""

    def command(
        chat_id: ChatId,
        config: ConfigOption = None,
        database_url: DatabaseUrlOption = None,
        json: JsonOption = False,
        actor: ActorOption = None,
    ) -> None:
        ctx = CommandContext.of(config, database_url, json=json)
        _show(ctx, _change(ctx, chat_id, paused, actor))

    command.__doc__ = doc
    return command


pause = _command(True, "Stop sharing into this chat until it is resumed (an active chat only).")
resume = _command(
    False, "Share into this paused chat again; its next share is recomputed by the rule."
)
