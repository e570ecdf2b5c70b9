"""Pure helpers on times: optional times (None means "nothing known yet"), and the text form
in which the ledger stores a time on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two times; a missing one does not count."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def latest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two times; a missing one does not count."""
    if a is None:
        return b
    return a if b is None else max(a, b)


# How the ledger stores a time where the database has no time type (SQLite): UTC, as
# ``YYYY-MM-DD HH:MM:SS.ffffff`` text. The format of SQLAlchemy's SQLite DATETIME, which wrote
# every existing ledger: text in it sorts as the times do, and old ledgers read unchanged.
def to_ledger_text(value: datetime) -> str:
    """``value`` (aware) as the ledger's UTC text."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the ledger; use scheduler.clock.now()")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def from_ledger_text(value: str) -> datetime:
    """The aware UTC datetime of the ledger's text (with or without the fraction)."""
    # "+00:00" makes the parser return an aware UTC datetime in one C call.
    return datetime.fromisoformat(value + "+00:00")
