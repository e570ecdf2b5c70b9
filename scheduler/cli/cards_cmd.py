"""``share-scheduler cards status|sync`` and ``share-scheduler line pause|resume``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from scheduler import clock
from scheduler.cards.observe import sync_configured_lines
from scheduler.cards.status import card_status, set_line_paused
from scheduler.cards.sync import CardSync, SyncReport
from scheduler.cli.args import PhoneNumberArgument, phone_number_callback
from scheduler.cli.audit import ActorOption, actor_name, record
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    LineFilterOption,
    out,
    print_json,
    print_table,
)
from scheduler.cli.context import CommandContext
from scheduler.core.rule import Policy
from scheduler.ledger.engine import Ledger
from scheduler.ledger.operator_log import ActionKind
from scheduler.linq.client import LinqClient

_NONE = "-"


NumberArgument = PhoneNumberArgument


def _card_text(card: dict[str, Any] | None) -> str:
    if card is None:
        return _NONE
    name = " ".join(p for p in (card["first_name"], card["last_name"]) if p)
    return f"{name} [{card['image_url']}]" if card["image_url"] else name


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else _NONE


def _state_text(row: dict[str, Any]) -> str:
    quiet = ("in_sync", "observe", "unknown", row["state"])
    return str(row["state"] if row["plan"] in quiet else f"{row['state']}, {row['plan']}")


def _next_write(row: dict[str, Any], now: datetime) -> str:
    if row["write_blocked"]:
        return "blocked"
    at = row["next_write_at"]
    if at is None:
        return _NONE
    return "now" if at <= now else _when(at)


def status(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    line: LineFilterOption = None,
    json: JsonOption = False,
) -> None:
    """Per line: desired and observed card, active since when, last error, next allowed write."""
    if line is not None:
        phone_number_callback(line)
    ctx = CommandContext.of(config, database_url, json=json)
    schedule, _ = ctx.schedule()
    now = clock.now()

    async def work(ledger: Ledger) -> list[dict[str, Any]]:
        return await card_status(ledger, schedule.cards, now, line)

    rows = ctx.on_ledger(work, schedule=schedule)
    if ctx.json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} lines", header_style="bold")
    # A phone number cut short is useless: that column never shrinks.
    table.add_column("line", no_wrap=True, min_width=len("+14155550100"))
    for column in ("state", "since", "desired", "observed", "next write", "last error"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            *(
                escape(text)
                for text in (
                    r["line"]
                    + (" (paused)" if r["paused"] else "")
                    + (f" (ineligible, probe {_when(r['probe_at'])})" if r["ineligible"] else ""),
                    _state_text(r),
                    _when(r["since"]),
                    _card_text(r["desired"]) if r["managed"] else "(observed only)",
                    _card_text(r["observed"]),
                    _next_write(r, now),
                    r["last_error"] or _NONE,
                )
            )
        )
    out.print(table)


def sync(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Keep polling until written cards are active (or give up, loudly)."
        ),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Read all cards; create or patch the declared ones within the write budget (3/10 min)."""
    ctx = CommandContext.of(config, database_url, json=json)
    # What happens goes to stderr as log events; stdout stays the table or the JSON.
    schedule, api_key = ctx.schedule_with_api("cards sync", missing="give --config FILE")

    async def work(ledger: Ledger) -> list[SyncReport]:
        client = LinqClient.from_config(schedule.linq, api_key)
        try:
            await sync_configured_lines(ledger, schedule, clock.now())
            runner = CardSync.from_schedule(
                schedule, ledger=ledger, client=client, policy=Policy.from_config(schedule.sharing)
            )
            reports = [await runner.run()]
            while wait and _still_activating(reports[-1]):
                wake = reports[-1].wake_at
                delay = (wake - clock.now()).total_seconds() if wake else 0.0
                await asyncio.sleep(
                    min(max(delay, 0.2), schedule.cards.check_interval.total_seconds())
                )
                reports.append(await runner.run())
            return reports
        finally:
            await client.aclose()

    reports = ctx.on_ledger(work, schedule=schedule)
    last = reports[-1]
    if ctx.json:
        writes = [w.as_dict() for r in reports for w in r.writes]
        print_json({**last.as_dict(), "writes": writes, "runs": len(reports)})
    else:
        _print_sync(reports)
    if not last.read_ok:
        typer.echo(f"error: could not read the cards: {last.error}", err=True)
        raise typer.Exit(1)


def _still_activating(report: SyncReport) -> bool:
    return report.read_ok and any(
        plan.action == "awaiting_activation" for plan in report.plans.values()
    )


def _print_sync(reports: list[SyncReport]) -> None:
    writes = [w for r in reports for w in r.writes]
    if writes:
        print_table(
            f"{len(writes)} card writes",
            ["line", "write", "fields", "result", "at", "next try"],
            [
                [
                    w.line,
                    w.action,
                    ", ".join(w.fields),
                    escape(w.result if w.error is None else f"{w.result}: {w.error}"),
                    _when(w.at),
                    _when(w.wait_until),
                ]
                for w in writes
            ],
        )
    last = reports[-1]
    print_table(
        f"{len(last.plans)} lines with a declared card",
        ["line", "now", "fields to write", "next look"],
        [
            [number, plan.action, ", ".join(sorted(plan.fields)) or _NONE, _when(plan.at)]
            for number, plan in sorted(last.plans.items())
        ],
    )


def _pause(ctx: CommandContext, number: str, paused: bool, actor: str | None) -> int:
    who = actor_name(actor)
    schedule, _ = ctx.schedule()

    async def work(ledger: Ledger) -> int:
        touched = await set_line_paused(ledger, number, paused, clock.now())
        await record(
            ledger,
            schedule,
            actor=who,
            action=ActionKind.line_pause if paused else ActionKind.line_resume,
            target=number,
            result=f"{'paused' if paused else 'resumed'}, {touched} chats",
        )
        return touched

    return ctx.on_ledger(work, schedule=schedule)


def _line_command(paused: bool, doc: str, done: str) -> Callable[..., None]:
    """``line pause`` or ``line resume``: the same flags, the one change."""

    def command(
        number: NumberArgument,
        config: ConfigOption = None,
        database_url: DatabaseUrlOption = None,
        json: JsonOption = False,
        actor: ActorOption = None,
    ) -> None:
        ctx = CommandContext.of(config, database_url, json=json)
        touched = _pause(ctx, number, paused, actor)
        if ctx.json:
            print_json({"line": number, "paused": paused, "chats": touched})
        else:
            typer.echo(f"line {number} {done.format(touched)}")

    command.__doc__ = doc
    return command


pause = _line_command(
    True,
    "Stop sharing into this line's chats (no chat's day is spent) until resumed.",
    "paused ({} chats taken off the schedule)",
)
resume = _line_command(
    False,
    "Share into this line's chats again; the daemon's next pass re-checks each of them.",
    "resumed ({} chats to re-check)",
)
