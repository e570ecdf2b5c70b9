"""The models and the migrations agree, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from scheduler.errors import SchemaOutOfDate
from scheduler.ledger import schema
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.models import Base


def _diff(connection: Connection) -> list[object]:
    ctx = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(ctx, Base.metadata))


def _check(connection: Connection) -> None:
    cfg = schema.alembic_config()
    cfg.attributes["connection"] = connection
    command.check(cfg)


async def test_upgrade_then_models_match_migrations(empty_url: str) -> None:
    ledger = Ledger(create_engine(empty_url, pool_size=1))
    try:
        with pytest.raises(SchemaOutOfDate, match="db upgrade"):
            await schema.ensure_current(ledger)
        before, after = await schema.upgrade(ledger)
        assert before is None
        assert after == schema.head_revision()
        await schema.ensure_current(ledger)
        async with ledger.read() as conn:
            assert await conn.run_sync(_diff) == []
            # `alembic check` is what a developer runs after touching the models.
            await conn.run_sync(_check)
    finally:
        await ledger.dispose()


async def test_downgrade_to_base_and_back(empty_url: str) -> None:
    ledger = Ledger(create_engine(empty_url, pool_size=1))
    try:
        await schema.upgrade(ledger)
        await schema.downgrade(ledger, "base")
        assert await schema.current_revision(ledger) is None
        await schema.upgrade(ledger)
        assert await schema.current_revision(ledger) == schema.head_revision()
    finally:
        await ledger.dispose()
