"""The ledger's text form of a time (SQLite) is the one SQLAlchemy's column type writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from scheduler.ledger.models import UTCDateTime
from scheduler.times import from_ledger_text, to_ledger_text

TIMES = [
    datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
    datetime(2026, 3, 2, 12, 0, 0, 123456, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
    # Another zone: stored as its UTC time.
    datetime(2026, 7, 1, 2, 30, 5, 42, tzinfo=timezone(timedelta(hours=-7))),
]


def _core_text(value: datetime) -> str:
    """What SQLAlchemy Core stores for a UTCDateTime column on SQLite."""
    dialect = sqlite.dialect()
    column_type = UTCDateTime()
    inner = column_type.process_bind_param(value, dialect)
    process = column_type.impl.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return str(process(inner))


@pytest.mark.parametrize("value", TIMES)
def test_text_is_what_core_stores_and_reads_back(value: datetime) -> None:
    text = to_ledger_text(value)
    assert text == _core_text(value)
    back = from_ledger_text(text)
    assert back == value
    assert back.tzinfo is not None and back.utcoffset() == timedelta(0)


def test_text_sorts_as_the_times_do() -> None:
    texts = [to_ledger_text(t) for t in TIMES]
    assert sorted(texts) == [to_ledger_text(t) for t in sorted(TIMES)]


def test_text_without_fraction_reads() -> None:
    assert from_ledger_text("2026-03-02 12:00:00") == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_ledger_text(datetime(2026, 3, 2, 12, 0))
