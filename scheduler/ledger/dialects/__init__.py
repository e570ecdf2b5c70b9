"""One module per database the ledger runs on, each implementing :class:`LedgerDialect`:
the statements whose SQL differs (claim of a due batch, upserts, the binding of times).
The ledger picks one per database, by name, once (``dialect_named``)."""

from __future__ import annotations

from scheduler.ledger.dialects.base import LedgerDialect
from scheduler.ledger.dialects.postgres import PostgresDialect
from scheduler.ledger.dialects.sqlite import SqliteDialect

__all__ = ["LedgerDialect", "dialect_named"]

_DIALECTS: dict[str, LedgerDialect] = {
    "sqlite": SqliteDialect(),
    "postgresql": PostgresDialect(),
}


def dialect_named(name: str) -> LedgerDialect:
    """The dialect of a SQLAlchemy dialect name (``engine.dialect.name``)."""
    try:
        return _DIALECTS[name]
    except KeyError:
        raise ValueError(f"the ledger does not run on {name!r}") from None
