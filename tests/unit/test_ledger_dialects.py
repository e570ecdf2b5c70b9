"""The ledger picks one dialect per database, by the database's name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scheduler.ledger.dialects import dialect_named
from scheduler.ledger.dialects.postgres import PostgresDialect
from scheduler.ledger.dialects.sqlite import SqliteDialect


def test_each_database_has_its_dialect() -> None:
    assert isinstance(dialect_named("sqlite"), SqliteDialect)
    assert isinstance(dialect_named("postgresql"), PostgresDialect)
    # Picked once: the same object every time.
    assert dialect_named("sqlite") is dialect_named("sqlite")


def test_an_unknown_database_is_refused() -> None:
    with pytest.raises(ValueError, match="does not run on 'mysql'"):
        dialect_named("mysql")


def test_times_bind_as_each_driver_takes_them() -> None:
    at = datetime(2026, 3, 2, 12, 0, 0, 5, tzinfo=UTC)
    assert dialect_named("sqlite").bind_time(at) == "2026-03-02 12:00:00.000005"
    assert dialect_named("postgresql").bind_time(at) is at
    assert dialect_named("sqlite").bind_time(None) is None
