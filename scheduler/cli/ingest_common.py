"""What ``backfill`` and ``ledger import`` share: the schedule, its secrets, logs on stderr."""

from __future__ import annotations

from pathlib import Path

from scheduler.cli.common import load
from scheduler.config import Schedule, Secret, Secrets
from scheduler.errors import ConfigError, ConfigProblem
from scheduler.logs import configure_logging, register_secrets


def load_with_rule(
    config: Path | None, database_url: str | None, *, what: str, quiet: bool = False
) -> Schedule:
    """The schedule, required: ``what`` schedules chats with the schedule's sharing rule."""
    return load_schedule_and_secrets(config, database_url, what=what, quiet=quiet)[0]


def load_with_api(
    config: Path | None, database_url: str | None, *, what: str, quiet: bool = False
) -> tuple[Schedule, Secret]:
    """The schedule and the Linq API token (webhook secrets are not needed here)."""
    schedule, secrets = load_schedule_and_secrets(config, database_url, what=what, quiet=quiet)
    if secrets.api_key is None:
        raise ConfigError(
            str(config),
            [
                ConfigProblem(
                    "linq.api_key_env",
                    f"environment variable {schedule.linq.api_key_env} is not set "
                    "(the Linq API token)",
                )
            ],
        )
    return schedule, secrets.api_key


def load_schedule_and_secrets(
    config: Path | None, database_url: str | None, *, what: str, quiet: bool
) -> tuple[Schedule, Secrets]:
    if config is None:
        raise ConfigError(
            "(no schedule file)",
            [ConfigProblem("", f"give --config FILE: {what} applies the schedule's sharing rule")],
        )
    schedule, secrets = load(config, database_url)
    # Logs go to stderr so that stdout carries only the table, the JSON or the progress bar.
    level = "warning" if quiet and schedule.logging.level in ("debug", "info") else None
    configure_logging(level or schedule.logging.level, schedule.logging.format)
    values = [s.reveal() for s in secrets.webhook_secrets]
    if secrets.api_key is not None:
        values.append(secrets.api_key.reveal())
    register_secrets(values)
    return schedule, secrets
