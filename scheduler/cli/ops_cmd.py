"""``share-scheduler plan`` and ``share-scheduler doctor``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.markup import escape

from scheduler import clock
from scheduler.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    JsonOption,
    OutputOption,
    out,
    output_format,
    print_data,
    print_json,
    print_table,
    run_on_ledger,
)
from scheduler.cli.ops_common import load_for_rule
from scheduler.doctor import run_doctor
from scheduler.ledger.stats import report_zone
from scheduler.logs import configure_logging
from scheduler.plan import forecast
from scheduler.rule import Policy

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def plan(
    hours: Annotated[
        int, typer.Option("--hours", min=1, max=24 * 14, help="How far ahead to look.")
    ] = 24,
    line: Annotated[str | None, typer.Option("--line", help="Only this line (E.164).")] = None,
    chats: Annotated[
        int,
        typer.Option("--chats", min=0, help="Also list up to this many predicted shares."),
    ] = 0,
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
) -> None:
    """What will be shared when, per line and hour, from the ledger and the sharing rule.

    Assumes the facts stay as they are (no new chats, cards unchanged) and that each share
    happens when due; hours are UTC, with the schedule's local hour alongside."""
    schedule, _ = load_for_rule(config, database_url, what="plan")
    policy = Policy.from_config(schedule.sharing)
    result = run_on_ledger(
        schedule,
        lambda led: forecast(
            led, policy, now=clock.now(), hours=hours, line=line, chat_limit=chats
        ),
    )
    if json:
        print_json(result.as_dict(with_chats=chats > 0))
        return
    zone = report_zone(schedule.sharing)
    rows: list[list[object]] = []
    for number, by_hour in result.per_line().items():
        for hour, n in by_hour:
            local = hour.astimezone(zone)
            rows.append([number or "(no line)", hour, f"{local:%Y-%m-%d %H:%M}", n])
    print_table(
        f"{result.total} shares forecast in the next {hours} h "
        f"({result.due_now} due now, {result.in_flight} in flight)",
        ["line", "hour (UTC)", f"hour ({zone.key})", "shares"],
        rows,
    )
    if chats:
        print_table(
            None,
            ["chat_id", "line", "at"],
            [[p.chat_id, p.line or "-", p.at] for p in result.chats],
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
    fmt = output_format(output, json)
    # Library warnings go to stderr; stdout carries only the verdicts.
    configure_logging("warning", "auto")
    checks = asyncio.run(run_doctor(config, database_url=database_url))
    failures = [c for c in checks if c.failed]
    warnings = [c for c in checks if c.status == "warn"]
    summary = {
        "ok": not failures,
        "failures": [c.name for c in failures],
        "warnings": [c.name for c in warnings],
        "checks": [c.as_dict() for c in checks],
    }
    if not print_data(summary, fmt):
        width = max(len(c.name) for c in checks)
        for c in checks:
            out.print(
                f"[{_STYLE[c.status]}]{c.status:<4}[/] {escape(c.name):<{width}}  "
                f"{escape(c.detail)}",
                highlight=False,
                markup=True,
            )
        verdict = "cannot share" if failures else "ready to share"
        out.print(
            f"{verdict}: {len(failures)} failure(s), {len(warnings)} warning(s), "
            f"{len(checks) - len(failures) - len(warnings)} ok",
            highlight=False,
        )
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("doctor")(doctor)
