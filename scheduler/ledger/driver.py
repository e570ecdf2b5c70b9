"""Driver-level statements for the hot paths (claims, outcomes, webhook batches), in the
caller's SQLAlchemy transaction.

A claim or a webhook batch runs a handful of statements over hundreds of rows; through
SQLAlchemy's asyncio adaptor each statement costs several hops to aiosqlite's thread (cursor,
execute, fetch, close) plus the compile and execution-context machinery, which made up most of
their time. Here the statements go straight to the driver connection that SQLAlchemy has
checked out, inside the transaction that ``Ledger.write()`` (or ``read()``) began. ``Codec``
converts values with the columns' own SQLAlchemy types, so that what is stored and read back is
exactly what Core would store and read.

Driver errors are wrapped in SQLAlchemy's exception classes, so ``Ledger`` tells an unavailable
ledger (503) from a bad statement as it does for Core statements.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.ledger.models import UTCDateTime
from scheduler.times import from_ledger_text, to_ledger_text

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of :meth:`Driver.run_all`: its parameters, or with ``many`` the
    parameters of each execution; ``rows``: it returns rows (a SELECT, or RETURNING)."""

    sql: str
    params: Sequence[Any]
    many: bool = False
    rows: bool = False


class Codec:
    """Bind and result processors of a table's columns, for one dialect."""

    def __init__(self, table: sa.Table, dialect: Dialect) -> None:
        self.table = table
        preparer = dialect.identifier_preparer
        self.name = preparer.format_table(table)
        # Column names as the dialect quotes them (only where needed).
        self.q: dict[str, str] = {c.name: preparer.quote(c.name) for c in table.c}
        self.bind: dict[str, Processor] = {}
        self.result: dict[str, Processor] = {}
        for column in table.c:
            if dialect.name == "sqlite" and isinstance(column.type, UTCDateTime):
                # The ledger's one text form of a time (what the column type stores too).
                self.bind[column.name] = to_ledger_text
                self.result[column.name] = from_ledger_text
                continue
            impl = column.type.dialect_impl(dialect)
            self.bind[column.name] = impl.bind_processor(dialect)
            self.result[column.name] = impl.result_processor(dialect, None)

    def columns(self, names: Sequence[str], alias: str = "") -> str:
        """``a, b, c`` (or ``t.a, t.b, t.c``), quoted for the dialect."""
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + self.q[name] for name in names)

    def binder(self, names: Sequence[str]) -> Callable[[Sequence[Any]], list[Any]]:
        """A function from values (in the order of ``names``) to driver parameters.

        Converted values are remembered for the binder's life (one batch): rows of a batch
        share times (``now``, often the same message time), and converting a datetime for
        SQLite formats a string.
        """
        procs = [self.bind[name] for name in names]
        convert = [(i, p) for i, p in enumerate(procs) if p is not None]
        memo: dict[tuple[int, Any], Any] = {}

        def bind(values: Sequence[Any]) -> list[Any]:
            out = list(values)
            if len(out) != len(procs):
                raise ValueError(f"expected {len(procs)} values, got {len(out)}")
            for i, proc in convert:
                value = out[i]
                if value is None:
                    continue
                key = (i, value)
                done = memo.get(key, memo)
                if done is memo:
                    done = memo[key] = proc(value)
                out[i] = done
            return out

        return bind

    def reader(self, names: Sequence[str]) -> Callable[[Sequence[Any]], dict[str, Any]]:
        """A function from a driver row (columns in the order of ``names``) to a dict."""
        procs = [self.result[name] for name in names]
        keys = list(names)

        def read(row: Sequence[Any]) -> dict[str, Any]:
            return {
                k: v if p is None or v is None else p(v)
                for k, p, v in zip(keys, procs, row, strict=True)
            }

        return read


# Parameters per IN (...) list: far below SQLite's and PostgreSQL's limits.
IN_LIST_SIZE = 500


def chunks(items: Sequence[str], size: int = IN_LIST_SIZE) -> Iterable[Sequence[str]]:
    """``items`` in slices of ``size``, for IN lists of bounded length."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


_codecs: weakref.WeakKeyDictionary[Dialect, dict[str, Codec]] = weakref.WeakKeyDictionary()


def codec(table: sa.Table, dialect: Dialect) -> Codec:
    per_dialect = _codecs.setdefault(dialect, {})
    found = per_dialect.get(table.name)
    if found is None:
        found = per_dialect[table.name] = Codec(table, dialect)
    return found


class Driver:
    """Statements on the driver connection of ``conn``; parameters are positional."""

    def __init__(self, conn: AsyncConnection, driver_connection: Any) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.name = conn.dialect.name
        self._dbapi_error: type[Exception] = conn.dialect.loaded_dbapi.Error
        self._raw = driver_connection
        self._sqlite = conn.dialect.driver == "aiosqlite"
        self._psycopg = conn.dialect.driver == "psycopg" and hasattr(driver_connection, "cursor")
        self.mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)

    def rows_of(self, width: int, count: int) -> str:
        """``(?, ?), (?, ?)``: ``count`` rows of ``width`` parameters for a VALUES list."""
        one = f"({self.marks(width)})"
        return ", ".join([one] * count)

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        try:
            if self._sqlite:
                return list(await self._raw.execute_fetchall(sql, params))
            if self._psycopg:
                async with self._raw.cursor() as cur:
                    await cur.execute(sql, params)
                    return list(await cur.fetchall())
        except self._dbapi_error as exc:
            raise self._wrap(sql, params, exc) from exc
        return list((await self.conn.exec_driver_sql(sql, tuple(params))).all())

    async def execute(self, sql: str, params: Sequence[Any]) -> None:
        try:
            if self._sqlite:
                await self._raw.execute(sql, params)
                return
            if self._psycopg:
                async with self._raw.cursor() as cur:
                    await cur.execute(sql, params)
                return
        except self._dbapi_error as exc:
            raise self._wrap(sql, params, exc) from exc
        await self.conn.exec_driver_sql(sql, tuple(params))

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        seq = [tuple(row) for row in rows]
        if not seq:
            return
        try:
            if self._sqlite:
                await self._raw.executemany(sql, seq)
                return
            if self._psycopg:
                async with self._raw.cursor() as cur:
                    await cur.executemany(sql, seq)
                return
        except self._dbapi_error as exc:
            raise self._wrap(sql, seq, exc) from exc
        await self.conn.exec_driver_sql(sql, seq)

    async def run_all(self, statements: Sequence[Statement]) -> list[list[Sequence[Any]]]:
        """Run ``statements`` in order; the rows of each (empty for those without rows).

        One trip for all of them where the driver allows: a pipeline on PostgreSQL (one
        round trip instead of one per statement), one call into aiosqlite's thread on
        SQLite (instead of one per statement). A failing statement raises as it would alone.
        """
        if not statements:
            return []
        if len(statements) == 1 and not self._sqlite:
            # One statement gains nothing from a pipeline, and would pay for its sync.
            return [await self._run_one(statements[0])]
        try:
            if self._sqlite and hasattr(self._raw, "_execute"):
                # aiosqlite runs one function at a time, in order, on its connection's thread.
                return list(await self._raw._execute(_run_on_sqlite, self._raw._conn, statements))
            if self._psycopg:
                return await self._run_pipelined(statements)
        except self._dbapi_error as exc:
            raise self._wrap(statements[0].sql, (), exc) from exc
        return [await self._run_one(statement) for statement in statements]

    async def _run_one(self, statement: Statement) -> list[Sequence[Any]]:
        if statement.many:
            await self.execute_many(statement.sql, statement.params)
            return []
        if statement.rows:
            return await self.fetch(statement.sql, statement.params)
        await self.execute(statement.sql, statement.params)
        return []

    async def _run_pipelined(self, statements: Sequence[Statement]) -> list[list[Sequence[Any]]]:
        out: list[list[Sequence[Any]]] = []
        async with self._raw.pipeline():
            cursors = []
            for statement in statements:
                cursor = self._raw.cursor()
                if statement.many:
                    await cursor.executemany(statement.sql, [tuple(r) for r in statement.params])
                else:
                    await cursor.execute(statement.sql, statement.params)
                cursors.append(cursor)
            # The first fetch sends everything queued and reads the results up to its own.
            for statement, cursor in zip(statements, cursors, strict=True):
                out.append(list(await cursor.fetchall()) if statement.rows else [])
                await cursor.close()
        return out

    def _wrap(self, sql: str, params: Any, exc: Exception) -> Exception:
        return sa.exc.DBAPIError.instance(
            sql, params, exc, self._dbapi_error, dialect=self.dialect, hide_parameters=True
        )


async def driver_of(conn: AsyncConnection) -> Driver:
    """The driver of ``conn``, in a transaction (begun here if the caller has not begun one)."""
    if not conn.in_transaction():
        await conn.begin()
    raw = await conn.get_raw_connection()
    return Driver(conn, raw.driver_connection)


def _run_on_sqlite(conn: Any, statements: Sequence[Statement]) -> list[list[Sequence[Any]]]:
    """On aiosqlite's thread: the statements one after the other, on the driver connection."""
    out: list[list[Sequence[Any]]] = []
    for statement in statements:
        if statement.many:
            conn.executemany(statement.sql, [tuple(r) for r in statement.params]).close()
            out.append([])
            continue
        cursor = conn.execute(statement.sql, statement.params)
        out.append(cursor.fetchall() if statement.rows else [])
        cursor.close()
    return out
