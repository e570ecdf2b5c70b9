"""What a command runs with, built in one place from its flags: schedule, ledger, output.

Every command turns its ``--config``, ``--database-url``, ``-o``/``--json`` into one
:class:`CommandContext` (:meth:`CommandContext.of`) and asks it for the schedule, the ledger
and the output format, so that loading, logging set-up, secret redaction and the ledger's
schema check are the same for all of them. ``-v`` is the root command's, kept in :data:`ROOT`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from scheduler.cli.common import OutputFormat, output_format, print_data
from scheduler.cli.options import ROOT, RootOptions
from scheduler.config import CONFIG_ENV, Schedule, Secret, Secrets, load_schedule
from scheduler.errors import ConfigError, ConfigProblem
from scheduler.ledger import schema
from scheduler.ledger.engine import Ledger
from scheduler.logs import configure_logging, register_secrets

T = TypeVar("T")

__all__ = ["ROOT", "CommandContext", "RootOptions"]


@dataclass(frozen=True)
class CommandContext:
    config: Path | None
    database_url: str | None = None
    output: OutputFormat = OutputFormat.table

    @classmethod
    def of(
        cls,
        config: Path | None,
        database_url: str | None = None,
        *,
        output: OutputFormat | None = None,
        json: bool = False,
    ) -> CommandContext:
        """The context of a command's flags; ``--json`` is the alias of ``-o json``."""
        return cls(config, database_url, output_format(output, json))

    @property
    def json(self) -> bool:
        return self.output == OutputFormat.json

    @property
    def verbose(self) -> bool:
        return ROOT.verbose

    # -- the schedule --------------------------------------------------------------------------

    def schedule(self, *, require_secrets: bool = False) -> tuple[Schedule, Secrets]:
        """The schedule file's, or a database-only schedule from ``--database-url`` alone."""
        if self.config is None:
            if self.database_url is None:
                raise ConfigError(
                    "(no schedule file)",
                    [ConfigProblem("", f"give --config FILE or set {CONFIG_ENV}")],
                )
            # Database-only commands can run from a URL alone.
            from scheduler.config import parse_schedule, resolve_secrets

            schedule = parse_schedule({"database": {"url": self.database_url}}, "--database-url")
            return schedule, resolve_secrets(schedule, os.environ)[0]
        return load_schedule(
            self.config, require_secrets=require_secrets, database_url=self.database_url
        )

    def schedule_for_rule(self, what: str, *, quiet: bool = False) -> tuple[Schedule, Secrets]:
        """The schedule, required: ``what`` applies its sharing rule. Logs go to stderr."""
        return self._required(
            f"give --config FILE: {what} applies the schedule's sharing rule", quiet=quiet
        )

    def schedule_with_api(
        self, what: str, *, quiet: bool = False, missing: str | None = None
    ) -> tuple[Schedule, Secret]:
        """The schedule and the Linq API token, both required.

        ``missing`` is what to say when there is no schedule file (by default: ``what`` needs
        its sharing rule).
        """
        if missing is not None and self.config is None:
            raise ConfigError("(no schedule file)", [ConfigProblem("", missing)])
        schedule, secrets = self.schedule_for_rule(what, quiet=quiet)
        if secrets.api_key is None:
            raise ConfigError(
                str(self.config),
                [
                    ConfigProblem(
                        "linq.api_key_env",
                        f"environment variable {schedule.linq.api_key_env} is not set "
                        "(the Linq API token)",
                    )
                ],
            )
        return schedule, secrets.api_key

    def _required(self, missing: str, *, quiet: bool) -> tuple[Schedule, Secrets]:
        if self.config is None:
            raise ConfigError("(no schedule file)", [ConfigProblem("", missing)])
        schedule, secrets = self.schedule()
        # Logs go to stderr so that stdout carries only the table, the JSON or the progress bar.
        level = "warning" if quiet and schedule.logging.level in ("debug", "info") else None
        configure_logging(level or schedule.logging.level, schedule.logging.format)
        values = [s.reveal() for s in secrets.webhook_secrets]
        if secrets.api_key is not None:
            values.append(secrets.api_key.reveal())
        register_secrets(values)
        return schedule, secrets

    # -- the ledger ----------------------------------------------------------------------------

    def on_ledger(
        self,
        work: Callable[[Ledger], Awaitable[T]],
        *,
        schedule: Schedule | None = None,
        any_schema: bool = False,
        create_missing: bool = False,
    ) -> T:
        """Run ``work`` on the ledger of ``schedule`` (default: :meth:`schedule`'s).

        An out-of-date schema is refused (exit 3) unless ``any_schema``: the ``db`` commands
        are what changes it.
        """
        database = (schedule or self.schedule()[0]).database

        async def run() -> T:
            ledger = Ledger.from_config(database, create_missing=create_missing)
            try:
                if not any_schema:
                    await schema.ensure_current(ledger)
                return await work(ledger)
            finally:
                await ledger.dispose()

        return asyncio.run(run())

    # -- output --------------------------------------------------------------------------------

    def show_data(self, value: Any) -> bool:
        """Print ``value`` when the format is JSON or YAML; False for the table formats."""
        return print_data(value, self.output)
