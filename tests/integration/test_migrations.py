"""The models and the migrations agree, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from scheduler.errors import SchemaOutOfDate
from scheduler.ledger import schema
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.models import (
    CHATS_FILLFACTOR,
    Base,
    Chat,
    ShareAttempt,
    UTCDateTime,
    declare_recipients_held_index,
)


def _diff(connection: Connection) -> list[object]:
    declare_recipients_held_index()  # as migrations/env.py does
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


async def test_open_started_attempts_move_into_the_claim_and_back(empty_url: str) -> None:
    """0006: an open ``started`` attempt becomes its chat's claim columns (and its row goes);
    one no claim points to is closed as ambiguous; downgrade writes the open claim back."""
    ledger = Ledger(create_engine(empty_url, pool_size=1))
    at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    stamp = {"created_at": at, "updated_at": at}
    try:
        await schema.upgrade(ledger, "0005")
        async with ledger.write() as conn:
            chats = sa.table(
                "chats",
                sa.column("chat_id"),
                sa.column("line"),
                sa.column("claimed_by"),
                sa.column("claim_attempt_id"),
                sa.column("claim_expires_at", UTCDateTime()),
                sa.column("created_at", UTCDateTime()),
                sa.column("updated_at", UTCDateTime()),
            )
            old = sa.table(
                "share_attempts",
                sa.column("id"),
                sa.column("chat_id"),
                sa.column("line"),
                sa.column("started_at", UTCDateTime()),
                sa.column("outcome"),
                sa.column("instance"),
                sa.column("forced", sa.Boolean()),
            )
            for chat_id in ("open", "orphan"):
                await conn.execute(
                    sa.insert(chats).values(chat_id=chat_id, line="+14155550100", **stamp)
                )
            for aid, chat_id, outcome, forced in (
                (7, "open", "started", True),
                (8, "orphan", "started", False),
                (9, "open", "shared", False),
            ):
                await conn.execute(
                    sa.insert(old).values(
                        id=aid,
                        chat_id=chat_id,
                        line="+14155550100",
                        started_at=at,
                        outcome=outcome,
                        instance="d0",
                        forced=forced,
                    )
                )
            await conn.execute(
                sa.update(chats)
                .where(chats.c.chat_id == "open")
                .values(claimed_by="d0", claim_attempt_id=7, claim_expires_at=at)
            )
        await schema.upgrade(ledger)
        async with ledger.read() as conn:
            claim = (
                await conn.execute(
                    sa.select(
                        Chat.claim_attempt_id, Chat.claim_started_at, Chat.claim_forced
                    ).where(Chat.chat_id == "open")
                )
            ).one()
            rows = {
                a.id: a.outcome
                for a in await conn.execute(sa.select(ShareAttempt.id, ShareAttempt.outcome))
            }
        assert tuple(claim) == (7, at, True)
        assert rows == {8: "ambiguous", 9: "shared"}
        await schema.downgrade(ledger, "0005")
        async with ledger.read() as conn:
            back = {
                tuple(a)
                for a in await conn.execute(
                    sa.select(old.c.id, old.c.outcome, old.c.started_at, old.c.forced)
                )
            }
        assert back == {
            (7, "started", at, True),
            (8, "ambiguous", at, False),
            (9, "shared", at, False),
        }
    finally:
        await ledger.dispose()


async def test_chats_pages_keep_room_for_the_claim_on_postgresql(empty_url: str) -> None:
    """0007: the chats table's fillfactor on PostgreSQL (room for a claim's HOT row version),
    reset by the downgrade; SQLite has no such setting and nothing changes there."""
    ledger = Ledger(create_engine(empty_url, pool_size=1))
    options = sa.text("SELECT reloptions FROM pg_class WHERE relname = 'chats'")
    try:
        await schema.upgrade(ledger, "0007")
        if not ledger.is_sqlite:
            async with ledger.read() as conn:
                assert (await conn.execute(options)).scalar_one() == [
                    f"fillfactor={CHATS_FILLFACTOR}"
                ]
        await schema.downgrade(ledger, "0006")
        if not ledger.is_sqlite:
            async with ledger.read() as conn:
                assert (await conn.execute(options)).scalar_one() is None
        assert await schema.current_revision(ledger) == "0006"
    finally:
        await ledger.dispose()
