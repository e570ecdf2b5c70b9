"""The few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(table: sa.Table, dialect: str) -> Any:
    """INSERT that silently skips rows whose primary key exists."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def upsert(table: sa.Table, dialect: str) -> Any:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def values_cte_update(
    table: str,
    key: str,
    columns: Sequence[tuple[str, sa.types.TypeEngine[Any]]],
    rows: Sequence[Sequence[Any]],
    constants: dict[str, tuple[Any, sa.types.TypeEngine[Any]]] | None = None,
) -> sa.TextClause:
    """One UPDATE for many rows with different values, on SQLite and PostgreSQL alike.

    ``WITH v(key, col...) AS (VALUES (...), ...) UPDATE table SET col = v.col ... FROM v``:
    one statement and one round trip instead of one per row. ``columns`` names the key
    first; ``constants`` are set to the same value on every row.
    """
    names = [name for name, _ in columns]
    binds: list[sa.BindParameter[Any]] = []
    tuples = []
    for i, row in enumerate(rows):
        cells = []
        for (name, type_), value in zip(columns, row, strict=True):
            bind = sa.bindparam(f"{name}_{i}", value, type_=type_)
            binds.append(bind)
            cells.append(f":{name}_{i}")
        tuples.append(f"({', '.join(cells)})")
    sets = [f"{name} = v.{name}" for name in names if name != key]
    for name, (value, type_) in (constants or {}).items():
        binds.append(sa.bindparam(f"k_{name}", value, type_=type_))
        sets.append(f"{name} = :k_{name}")
    sql = (
        f"WITH v({', '.join(names)}) AS (VALUES {', '.join(tuples)}) "
        f"UPDATE {table} SET {', '.join(sets)} FROM v WHERE {table}.{key} = v.{key}"
    )
    return sa.text(sql).bindparams(*binds)
