"""``share-scheduler plan`` and ``share-scheduler doctor``."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from scheduler import clock
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    LineFilterOption,
    OutputOption,
    out,
    print_fields,
    print_table,
)
from scheduler.cli.context import CommandContext
from scheduler.config import Schedule
from scheduler.core.rule import Policy
from scheduler.doctor import Check, run_doctor
from scheduler.ledger import queries
from scheduler.ledger.diagnostics import LineStanding, line_standings
from scheduler.ledger.engine import Ledger
from scheduler.ledger.stats import report_zone
from scheduler.logs import configure_logging
from scheduler.plan import ChatVerdict, Forecast, explain_chat, forecast, rate_fit

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def plan(
    hours: Annotated[
        int, typer.Option("--hours", min=1, max=24 * 14, help="How far ahead to look.")
    ] = 24,
    line: LineFilterOption = None,
    chats: Annotated[
        int,
        typer.Option("--chats", min=0, help="Also list up to this many predicted shares."),
    ] = 0,
    chat: Annotated[
        str | None,
        typer.Option(
            "--chat",
            help="Explain one chat (id or unique prefix): due or not, why, and when next.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = None,
    json: JsonOption = False,
) -> None:
    """What will be shared when, per line and hour, from the ledger and the sharing rule.

    Says whether the busiest day fits the rate limit (share_pass.requests_per_second over the
    share window), which lines are paused, and with --chats or --chat why each chat is or is
    not due now. Assumes the facts stay as they are (no new chats, cards unchanged) and that
    each share happens when due; hours are UTC, with the schedule's local hour alongside."""
    ctx = CommandContext.of(config, database_url, output=output, json=json)
    schedule, _ = ctx.schedule_for_rule("plan")
    policy = Policy.from_config(schedule.sharing)
    zone = report_zone(schedule.sharing)
    now = clock.now()
    if chat is not None:
        _explain(ctx, schedule, policy, chat, now)
        return

    async def work(led: Ledger) -> tuple[Forecast, list[LineStanding]]:
        result = await forecast(led, policy, now=now, hours=hours, line=line, chat_limit=chats)
        return result, await line_standings(led)

    result, known_lines = ctx.on_ledger(work, schedule=schedule)
    fit = rate_fit(result, policy, schedule.share_pass.requests_per_second, zone)
    paused = [standing.number for standing in known_lines if standing.paused]
    if ctx.show_data(
        {**result.as_dict(with_chats=chats > 0), "rate": fit.as_dict(), "paused_lines": paused}
    ):
        return
    out.print(
        f"{result.total} shares forecast in the next {hours} h "
        f"({result.due_now} due now, {result.in_flight} in flight)",
        highlight=False,
    )
    window_h = fit.window_seconds / 3600
    verdict = "fits" if fit.fits else "does NOT fit: some chats wait for the next day"
    busiest = f"{fit.busiest_shares} on {fit.busiest_day}" if fit.busiest_day else "none"
    out.print(
        f"rate limit: {fit.requests_per_second:g}/s x {window_h:g} h window = {fit.capacity} "
        f"shares a day; busiest day: {busiest}: {verdict}",
        highlight=False,
        soft_wrap=False,
    )
    for paused_line in paused:
        out.print(
            f"line {paused_line} is paused: none of its chats is forecast "
            f"(`share-scheduler line resume {paused_line}`)",
            highlight=False,
            soft_wrap=False,
        )
    rows: list[list[object]] = []
    for number, by_hour in result.per_line().items():
        for hour, n in by_hour:
            local = hour.astimezone(zone)
            rows.append([number or "(no line)", hour, f"{local:%Y-%m-%d %H:%M}", n])
    out.print(f"local_hour is in {zone.key}", highlight=False)
    print_table(None, ["line", "hour_utc", "local_hour", "shares"], rows)
    if chats:
        out.print()
        print_table(
            None,
            ["chat_id", "line", "at", "why_not_now"],
            [
                [p.chat_id, p.line, p.at, "-" if p.reason == "due" else p.reason]
                for p in result.chats
            ],
        )


def _explain(
    ctx: CommandContext, schedule: Schedule, policy: Policy, chat: str, now: datetime
) -> None:
    async def work(led: Ledger) -> ChatVerdict:
        return await explain_chat(led, policy, await queries.resolve_chat_id(led, chat), now)

    found = ctx.on_ledger(work, schedule=schedule)
    if ctx.show_data(found.as_dict()):
        return
    v = found.verdict
    print_fields(
        f"chat {found.chat_id}",
        [
            ("chat_id", found.chat_id),
            ("line", found.line),
            ("due now", v.due),
            ("reason", v.reason),
            ("next share", v.next_at),
            ("line paused", found.line_paused),
            ("card", found.card_state),
        ],
    )


def doctor(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = None,
    json: JsonOption = False,
) -> None:
    """Check that this installation can share; one line per check, exit 1 if any fails.

    Checks the schedule file, the database and its schema, the API token, each line's card,
    paused lines, the webhook secret and the clock (against Linq's). Warnings (a card not
    created yet, a paused line) are shown apart and do not fail."""
    ctx = CommandContext.of(config, database_url, output=output, json=json)
    # Library warnings go to stderr; stdout carries only the verdicts.
    configure_logging("warning", "auto")
    checks = asyncio.run(run_doctor(ctx.config, database_url=ctx.database_url))
    failures = [c for c in checks if c.failed]
    warnings = [c for c in checks if c.status == "warn"]
    summary = {
        "ok": not failures,
        "failures": [c.name for c in failures],
        "warnings": [c.name for c in warnings],
        "checks": [c.as_dict() for c in checks],
    }
    if not ctx.show_data(summary):
        _print_checks(checks)
        verdict = "cannot share" if failures else "ready to share"
        out.print(
            f"{verdict}: {len(failures)} failure(s), {len(warnings)} warning(s), "
            f"{len(checks) - len(failures) - len(warnings)} ok",
            highlight=False,
        )
    if failures:
        raise typer.Exit(1)


def _print_checks(checks: list[Check]) -> None:
    """One check a line; on a terminal the details fold within its width."""
    if not out.is_terminal:
        width = max(len(c.name) for c in checks)
        for c in checks:
            out.print(f"{c.status:<4} {c.name:<{width}}  {c.detail}", highlight=False, markup=False)
        return
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for c in checks:
        table.add_row(f"[{_STYLE[c.status]}]{c.status}[/]", escape(c.name), escape(c.detail))
    out.print(table)
