"""Schema revisions: upgrade or downgrade the ledger, and refuse to run on another one.

Several replicas may run ``db upgrade`` at once (a Kubernetes rollout, compose's entrypoint,
systemd's ``ExecStartPre`` on two hosts): on PostgreSQL the migration runs under a
transaction-scoped advisory lock, so one replica migrates and the others wait, then find the
ledger at head. On SQLite the write transaction (``BEGIN IMMEDIATE``) already serialises them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler.errors import SchemaOutOfDate, UnknownRevision
from scheduler.ledger.engine import Ledger

# Alembic (with Mako and Pygments, ~10 MB resident and most of a second) is imported only to
# change the schema: checking it, as the daemon does at start, reads the files and one row.
if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS_ENV = "SHARE_SCHEDULER_MIGRATIONS"
# pg_advisory_xact_lock key for schema changes ("SSSCHEMA" as bytes): any fixed bigint works,
# as long as every version of share-scheduler uses the same one.
SCHEMA_LOCK_KEY = 0x5353_5343_4845_4D41


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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


# A version file's own revision and the one before it, as plain string literals (or None).
_REVISION_LINE = re.compile(
    r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(None|\"[^\"\n]*\"|'[^'\n]*')\s*$",
    re.MULTILINE,
)


def _linear_revisions(versions: Path) -> tuple[str, ...] | None:
    """The revisions in ``versions``, oldest first, read from the files as text, when they
    form one line (each revision and the one before it plain strings, one head); otherwise
    None, and Alembic reads them (merges, branches, odd files: it knows their rules)."""
    before: dict[str, str | None] = {}
    for path in sorted(versions.glob("*.py")):
        found = {m[1]: m[2] for m in _REVISION_LINE.finditer(path.read_text())}
        if set(found) != {"revision", "down_revision"}:
            return None
        revision = found["revision"][1:-1]
        down = found["down_revision"]
        if revision in before:
            return None
        before[revision] = None if down == "None" else down[1:-1]
    heads = set(before) - set(before.values())
    if len(heads) != 1:
        return None
    chain = [heads.pop()]
    while (down := before[chain[-1]]) is not None:
        if down not in before or len(chain) > len(before):
            return None
        chain.append(down)
    return tuple(reversed(chain)) if len(chain) == len(before) else None


def head_revision() -> str | None:
    revisions = _linear_revisions(migrations_dir() / "versions")
    if revisions is not None:
        return revisions[-1]
    return _script().get_current_head()


def known_revisions() -> set[str]:
    revisions = _linear_revisions(migrations_dir() / "versions")
    if revisions is not None:
        return set(revisions)
    return {rev.revision for rev in _script().walk_revisions()}


def lock_schema(connection: Connection) -> None:
    """Hold the schema lock until ``connection``'s transaction ends (PostgreSQL only)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})


def _current(connection: Connection) -> str | None:
    # Alembic's version table, read as Alembic reads it when it holds one row (or none).
    if sa.inspect(connection).has_table("alembic_version"):
        rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        if len(rows) <= 1:
            return str(rows[0][0]) if rows else None
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _newer_than_known(current: str | None, head: str | None) -> SchemaOutOfDate | None:
    if current is None or current in known_revisions():
        return None
    return SchemaOutOfDate(
        f"ledger at {current}, this version knows up to {head}: a newer share-scheduler "
        f"migrated it; run that version (or step the ledger back with it: "
        f"`share-scheduler db downgrade {head}`)"
    )


def check_known(current: str | None) -> None:
    """Raise SchemaOutOfDate when the ledger is at a revision this version does not have."""
    newer = _newer_than_known(current, head_revision())
    if newer is not None:
        raise newer


async def current_revision(ledger: Ledger) -> str | None:
    async with ledger.read() as conn:
        return await conn.run_sync(_current)


def _migrate(connection: Connection, cfg: Config, direction: str, revision: str) -> None:
    from alembic import command
    from alembic.util.exc import CommandError

    cfg.attributes["connection"] = connection
    try:
        if direction == "upgrade":
            command.upgrade(cfg, revision)
        else:
            command.downgrade(cfg, revision)
    except CommandError as exc:
        raise UnknownRevision(f"cannot {direction} the ledger to {revision!r}: {exc}") from exc


async def _change(ledger: Ledger, direction: str, revision: str) -> tuple[str | None, str | None]:
    cfg = alembic_config()

    def _run(connection: Connection) -> tuple[str | None, str | None]:
        lock_schema(connection)
        # Read after the lock: a replica that waited sees what the one before it migrated.
        before = _current(connection)
        check_known(before)
        _migrate(connection, cfg, direction, revision)
        return before, _current(connection)

    async with ledger.write() as conn:
        return await conn.run_sync(_run)


async def upgrade(ledger: Ledger, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to ``revision``; return (before, after)."""
    return await _change(ledger, "upgrade", revision)


async def downgrade(ledger: Ledger, revision: str = "-1") -> tuple[str | None, str | None]:
    """Step the schema back to ``revision`` (``-1``: one step, ``base`` empties it)."""
    return await _change(ledger, "downgrade", revision)


async def ensure_current(ledger: Ledger) -> None:
    current = await current_revision(ledger)
    head = head_revision()
    check_known(current)
    if current != head:
        raise SchemaOutOfDate(
            f"the ledger schema is at {current or 'nothing (empty database)'} but this version "
            f"needs {head}: run `share-scheduler db upgrade` first"
        )
