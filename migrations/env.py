"""Alembic environment: runs on a connection handed in by share-scheduler, or opens one."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from scheduler.config import database_password
from scheduler.ledger.engine import create_engine
from scheduler.ledger.models import Base, declare_recipients_held_index
from scheduler.ledger.schema import lock_schema

config = context.config
declare_recipients_held_index()
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        # Replicas migrating at once: one runs, the others wait (plain `alembic` commands too).
        lock_schema(connection)
        context.run_migrations()


async def _run_async(url: str) -> None:
    password = database_password()
    engine = create_engine(url, pool_size=1, password=password.reveal() if password else None)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("SHARE_SCHEDULER_DATABASE_URL")
    if not url:
        raise SystemExit(
            "no database URL: use `share-scheduler db upgrade --config FILE`, "
            "or set SHARE_SCHEDULER_DATABASE_URL for plain alembic commands"
        )
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
