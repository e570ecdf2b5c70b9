"""The ledger picks one dialect per database, by the database's name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scheduler.core.chat import ChatState
from scheduler.ledger.dialects import dialect_named
from scheduler.ledger.dialects.postgres import PostgresDialect
from scheduler.ledger.dialects.sqlite import SqliteDialect
from scheduler.times import from_ledger_text


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


def _sqlite_row(time_text: str | None, flag: int | None, other: object) -> tuple[object, ...]:
    """A fact row as SQLite returns it: every time column ``time_text``, every boolean
    ``flag`` (``is_group`` 0 when ``flag`` is None: it is NOT NULL), the rest ``other``."""
    row: list[object] = []
    for name in ChatState._fields:
        if name.endswith("_at") or name == "not_before":
            row.append(time_text)
        elif name in ("is_group", "line_paused", "claim_forced"):
            row.append(0 if flag is None and name == "is_group" else flag)
        else:
            row.append(other)
    return tuple(row)


@pytest.mark.parametrize(
    ("time_text", "flag", "other"),
    [
        ("2026-03-02 12:00:00.000005", 1, "x"),
        ("2026-03-02 12:00:00", 0, 7),
        (None, None, None),
    ],
)
def test_sqlite_reads_each_fact_column_as_the_ledger_stored_it(
    time_text: str | None, flag: int | None, other: object
) -> None:
    state = dialect_named("sqlite").states([_sqlite_row(time_text, flag, other)])[0]
    for name, value in state._asdict().items():
        if name.endswith("_at") or name == "not_before":
            assert value == (None if time_text is None else from_ledger_text(time_text)), name
            assert value is None or value.tzinfo is not None, name
        elif name in ("is_group", "line_paused", "claim_forced"):
            expected = bool(flag) if flag is not None or name == "is_group" else None
            assert value is expected, name
        else:
            assert value == other, name
