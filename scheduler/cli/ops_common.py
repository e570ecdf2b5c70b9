"""Helpers of the operator commands: the schedule the rule needs, a ledger, logs on stderr."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from scheduler.cli.common import load
from scheduler.config import Schedule, Secrets
from scheduler.errors import ConfigError, ConfigProblem
from scheduler.ledger import schema
from scheduler.ledger.engine import Ledger
from scheduler.logs import configure_logging, register_secrets

T = TypeVar("T")


def load_for_rule(
    config: Path | None, database_url: str | None, *, what: str
) -> tuple[Schedule, Secrets]:
    """The schedule, required: ``what`` uses the sharing rule, whose knobs live in it."""
    if config is None:
        raise ConfigError(
            "(no schedule file)",
            [ConfigProblem("", f"give --config FILE: {what} applies the schedule's sharing rule")],
        )
    schedule, secrets = load(config, database_url)
    # Logs go to stderr, so that stdout carries only the table or the JSON.
    configure_logging(schedule.logging.level, schedule.logging.format)
    values = [s.reveal() for s in secrets.webhook_secrets]
    if secrets.api_key is not None:
        values.append(secrets.api_key.reveal())
    register_secrets(values)
    return schedule, secrets


def run_with_ledger(schedule: Schedule, work: Callable[[Ledger], Awaitable[T]]) -> T:
    """Run ``work`` on the schedule's ledger, refusing an out-of-date schema (exit 3)."""

    async def _run() -> T:
        ledger = Ledger.from_config(schedule.database)
        try:
            await schema.ensure_current(ledger)
            return await work(ledger)
        finally:
            await ledger.dispose()

    return asyncio.run(_run())
