"""One module per database the ledger runs on, each implementing :class:`LedgerDialect`:
the statements whose SQL differs (claim of a due batch, upserts, the binding of times).
The ledger picks one per database, by name, once (``dialect_named``).

Each module is imported on first use: a daemon on SQLite never loads SQLAlchemy's PostgreSQL
dialect (about 2 MB resident), one on PostgreSQL never loads SQLite's.
"""

from __future__ import annotations

import importlib

from scheduler.ledger.dialects.base import LedgerDialect

__all__ = ["LedgerDialect", "dialect_named"]

# Database name -> (module, class) of its dialect.
_MODULES = {
    "sqlite": ("scheduler.ledger.dialects.sqlite", "SqliteDialect"),
    "postgresql": ("scheduler.ledger.dialects.postgres", "PostgresDialect"),
}
_DIALECTS: dict[str, LedgerDialect] = {}


def dialect_named(name: str) -> LedgerDialect:
    """The dialect of a SQLAlchemy dialect name (``engine.dialect.name``)."""
    dialect = _DIALECTS.get(name)
    if dialect is None:
        try:
            module, cls = _MODULES[name]
        except KeyError:
            raise ValueError(f"the ledger does not run on {name!r}") from None
        dialect = _DIALECTS[name] = getattr(importlib.import_module(module), cls)()
    return dialect
