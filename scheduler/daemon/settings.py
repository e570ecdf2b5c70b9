"""The schedule in force, and its reload from the file on SIGHUP.

An invalid file is rejected and the old schedule kept. Keys bound when the daemon starts
(database, linq, webhooks.listen, http, instance_id) take effect at the next start only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog

from scheduler.config import Schedule, Secrets, load_schedule
from scheduler.core.rule import Policy
from scheduler.errors import ConfigError
from scheduler.logs import configure_logging, register_secrets

log = structlog.get_logger("scheduler.daemon")


class Settings:
    """The schedule, secrets and sharing policy the daemon runs with."""

    def __init__(
        self,
        schedule: Schedule,
        secrets: Secrets,
        config_path: Path | None,
        database_url: str | None = None,
    ) -> None:
        self.schedule = schedule
        self.secrets = secrets
        self.config_path = config_path
        # A --database-url given at start outlives reloads of the file.
        self.database_url = database_url
        self.policy = Policy.from_config(schedule.sharing)
        self._reload_lock = asyncio.Lock()

    def secret_values(self) -> list[str]:
        values = [s.reveal() for s in self.secrets.webhook_secrets]
        if self.secrets.api_key is not None:
            values.append(self.secrets.api_key.reveal())
        return values

    async def reload(self, stopping: asyncio.Event, apply: Callable[[Schedule], None]) -> None:
        """Read the file again, one reload at a time; if it is valid (and the daemon is not
        stopping), make it the schedule in force and call ``apply`` with the old schedule."""
        if self.config_path is None:
            return
        async with self._reload_lock:
            try:
                # In a thread: reading and validating a hostile or huge file must not stop
                # webhooks, /healthz and shares in the meantime.
                schedule, secrets = await asyncio.to_thread(
                    load_schedule, self.config_path, database_url=self.database_url
                )
            except ConfigError as exc:
                log.error(
                    "config.reload_rejected",
                    path=str(self.config_path),
                    problems=[str(p) for p in exc.problems],
                )
                return
            except Exception as exc:  # whatever the file did, the old schedule stays
                log.error(
                    "config.reload_rejected", path=str(self.config_path), problems=[repr(exc)]
                )
                return
            if stopping.is_set():
                return
            old = self.schedule
            pending = restart_required(old, schedule, self.secrets, secrets)
            self.schedule = schedule
            self.secrets = secrets
            register_secrets(self.secret_values())
            self.policy = Policy.from_config(schedule.sharing)
            apply(old)
            configure_logging(schedule.logging.level, schedule.logging.format)
            log.info("config.reloaded", path=str(self.config_path))
            if pending:
                log.warning("config.restart_required", path=str(self.config_path), keys=pending)


def restart_required(
    old: Schedule, new: Schedule, old_secrets: Secrets, new_secrets: Secrets
) -> list[str]:
    """The changed keys a reload cannot apply: they are bound when the daemon starts."""
    keys = []
    if old.database != new.database:
        keys.append("database")
    if old.linq != new.linq or old_secrets.api_key != new_secrets.api_key:
        keys.append("linq")
    if (old.webhooks.enabled, old.webhooks.listen) != (new.webhooks.enabled, new.webhooks.listen):
        keys.append("webhooks.listen")
    if old.http != new.http:
        keys.append("http")
    if old.instance_id != new.instance_id:
        keys.append("instance_id")
    return keys
