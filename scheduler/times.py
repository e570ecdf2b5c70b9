"""Pure helpers on optional times, where None means "nothing known yet"."""

from __future__ import annotations

from datetime import datetime


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
