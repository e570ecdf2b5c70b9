"""Schema revisions: upgrade the ledger, and refuse to run on an out-of-date one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from scheduler.errors import SchemaOutOfDate
from scheduler.ledger.engine import Ledger

MIGRATIONS_ENV = "SHARE_SCHEDULER_MIGRATIONS"


def migrations_dir() -> Path:
    configured = os.environ.get(MIGRATIONS_ENV)
    if configured:
        return Path(configured)
    source = Path(__file__).resolve().parents[2] / "migrations"
    if source.is_dir():
        return source
    # A wheel install (`pip install .`) ships them as data files under the prefix.
    installed = Path(sys.prefix) / "share" / "share-scheduler" / "migrations"
    return installed if installed.is_dir() else source


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(ledger: Ledger) -> str | None:
    async with ledger.read() as conn:
        return await conn.run_sync(_current)


async def upgrade(ledger: Ledger, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to ``revision``; return (before, after)."""
    cfg = alembic_config()

    def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
        before = _current(connection)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
        return before, _current(connection)

    async with ledger.write() as conn:
        return await conn.run_sync(_upgrade)


async def ensure_current(ledger: Ledger) -> None:
    current = await current_revision(ledger)
    head = head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"the ledger schema is at {current or 'nothing (empty database)'} but this version "
            f"needs {head}: run `share-scheduler db upgrade` first"
        )


async def downgrade(ledger: Ledger, revision: str) -> None:
    """Step the schema back to ``revision`` (``base`` empties it)."""
    cfg = alembic_config()

    def _downgrade(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    async with ledger.write() as conn:
        await conn.run_sync(_downgrade)
