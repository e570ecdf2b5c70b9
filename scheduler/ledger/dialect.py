"""The few statements that differ between SQLite and PostgreSQL, by the dialect's name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.sql.dml import Insert

from scheduler.ledger.dialects import dialect_named

if TYPE_CHECKING:
    from scheduler.ledger.dialects.base import UpsertInsert


def insert_ignore(table: sa.Table, dialect: str) -> Insert:
    """INSERT that silently skips rows whose primary key exists."""
    return dialect_named(dialect).insert_ignore(table)


def upsert(table: sa.Table, dialect: str) -> UpsertInsert:
    return dialect_named(dialect).upsert(table)
