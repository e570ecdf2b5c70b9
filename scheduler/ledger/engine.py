"""Database engines for the ledger: SQLite (WAL, one writer) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import asyncio
import functools
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import concurrency as _concurrency

from scheduler.config import DatabaseConfig, database_password, normalize_database_url, redact_url
from scheduler.errors import LedgerMissing, LedgerUnavailable
from scheduler.logs import register_secrets

__all__ = ["Ledger", "create_engine", "redact_url"]

SQLITE_BUSY_TIMEOUT_MS = 10_000
# A PostgreSQL connection back in the pool for longer than this is pinged before it is lent
# again (a server restart, a proxy's idle timeout). One used more recently is lent as it is:
# a ping per transaction is a round trip per transaction, and a connection that died since
# fails its transaction, which the pool's invalidation then heals for every connection.
PING_AFTER_IDLE_S = 10.0
# SQLAlchemy's bridge from its synchronous code back to the event loop (``await_only`` before
# SQLAlchemy 2.1).
_await: Any = getattr(_concurrency, "await_", None) or _concurrency.await_only


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, autocheckpoint: bool = True) -> None:
    # Autocommit at the driver level; SQLAlchemy's begin event issues BEGIN itself below.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    if not autocheckpoint:
        # See scheduler.ledger.checkpoint: a background task copies the log back instead.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _postgres_session(dbapi_connection: Any, _record: Any) -> None:
    """Every session in UTC, whatever the server's or the database's ``TimeZone``: psycopg
    then returns times with ``datetime.timezone.utc``, the zone of the daemon's own clock,
    and comparing two such times needs no zone lookup (0.04 against 0.37 us with a
    ``ZoneInfo``: the rule's re-check of a claimed chat compares a dozen)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.close()
    # Committed: a SET rolled back with its transaction (the pool's reset) would be undone.
    dbapi_connection.commit()


def _stamp_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(
    dbapi_connection: Any, record: Any, _proxy: Any, *, dialect: Any, after: float
) -> None:
    """The pool's checkout: ping a connection idle for ``after`` seconds or more; a failed
    ping discards it and the pool lends another (SQLAlchemy's ``DisconnectionError``)."""
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < after:
        return  # new, or lent again within moments of its last use
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as exc:
        raise DisconnectionError(f"ping after {after:g} s idle failed: {exc}") from exc


def _sqlite_begin(conn: Any) -> None:
    # Writers take the lock up front so two processes never deadlock upgrading a read lock.
    mode = "IMMEDIATE" if conn.get_execution_options().get("ledger_write") else "DEFERRED"
    driver = _aiosqlite_of(conn.connection.dbapi_connection)
    if driver is None:
        conn.exec_driver_sql(f"BEGIN {mode}")
        return
    # One call into aiosqlite's thread, where a statement through SQLAlchemy makes three
    # (cursor, execute, close): each is a wait for the event loop's next turns, which a busy
    # share pass makes long.
    _await(driver._execute(driver._conn.execute, f"BEGIN {mode}"))


def _sqlite_reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
    """The pool's reset of a connection checked back in: a rollback only if a transaction is
    still open. (SQLAlchemy's own reset rolls back after every commit too: one more call into
    aiosqlite's thread per transaction.)"""
    if state.terminate_only or not state.asyncio_safe:
        return  # the connection is being discarded
    driver = _aiosqlite_of(dbapi_connection)
    if driver is None or driver._conn is None or driver._conn.in_transaction:
        dbapi_connection.rollback()


def _aiosqlite_of(dbapi_connection: Any) -> Any:
    """The aiosqlite connection under SQLAlchemy's adaptor, if it has the parts used here."""
    driver = getattr(dbapi_connection, "_connection", None)
    return driver if hasattr(driver, "_execute") and hasattr(driver, "_conn") else None


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    connect_timeout: float = 5.0,
    background_checkpoint: bool = False,
    password: str | None = None,
    create_missing: bool = True,
    ping_after_idle: float = PING_AFTER_IDLE_S,
) -> AsyncEngine:
    """An engine for the ledger at ``url``.

    ``password`` (PostgreSQL) replaces the URL's: SQLAlchemy escapes it, so any character works.

    ``background_checkpoint`` (SQLite): commits never checkpoint the write-ahead log; the
    owner must run :class:`scheduler.ledger.checkpoint.Checkpointer` (the daemon does).
    ``create_missing`` (SQLite): create the file and its directory on first connect; when
    False the file is opened read-write only (SQLite's ``mode=rw``), never created.
    ``ping_after_idle`` (PostgreSQL): seconds in the pool after which a connection is pinged
    before it is lent again (``PING_AFTER_IDLE_S``).
    """
    parsed = make_url(normalize_database_url(url))
    if password is not None and parsed.get_backend_name() != "sqlite":
        parsed = parsed.set(password=password)
    if parsed.get_backend_name() == "sqlite":
        database = sqlite_path(url)
        if database is not None and create_missing:
            database.parent.mkdir(parents=True, exist_ok=True)
        elif database is not None and not parsed.query.get("uri"):
            quoted = urllib.parse.quote(str(database))
            parsed = make_url(f"{parsed.drivername}:///file:{quoted}?mode=rw&uri=true")
        engine = create_async_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=0,
            pool_reset_on_return=None,  # _sqlite_reset below
        )
        event.listen(
            engine.sync_engine,
            "connect",
            functools.partial(_sqlite_pragmas, autocheckpoint=not background_checkpoint),
        )
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        event.listen(engine.sync_engine, "reset", _sqlite_reset)
        return engine
    engine = create_async_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        pool_timeout=connect_timeout,
        connect_args={"connect_timeout": max(1, int(connect_timeout))},
    )
    event.listen(engine.sync_engine, "connect", _postgres_session)
    event.listen(engine.sync_engine, "checkin", _stamp_checkin)
    event.listen(
        engine.sync_engine,
        "checkout",
        functools.partial(_ping_if_idle, dialect=engine.dialect, after=ping_after_idle),
    )
    return engine


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory ones."""
    parsed = make_url(normalize_database_url(url))
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None  # a URI the operator wrote: their mode, their path
    return Path(database).expanduser()


class Ledger:
    """The ledger's engine, with one writer at a time on SQLite.

    SQLite allows one writer per file; serialising writers in-process avoids lock contention
    and "database is locked" between webhook ingestion and the share pass. PostgreSQL needs no
    such lock: claims use row locks with SKIP LOCKED.
    """

    def __init__(
        self, engine: AsyncEngine, *, required_file: Path | None = None, url: str | None = None
    ) -> None:
        self.engine = engine
        # The URL as configured: the engine's may be a rewritten one (SQLite's mode=rw URI).
        self._url = (
            redact_url(url) if url is not None else engine.url.render_as_string(hide_password=True)
        )
        self.dialect = engine.dialect.name
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        # A SQLite file that must exist already: its absence is an error naming it.
        self.required_file = required_file

    @classmethod
    def from_config(
        cls,
        cfg: DatabaseConfig,
        *,
        background_checkpoint: bool = False,
        create_missing: bool = False,
    ) -> Ledger:
        """The configured ledger. Only ``db upgrade`` and the daemon create a missing one."""
        password = database_password()
        # Whichever way the password came (URL or environment), no log line may show it.
        shown = [make_url(cfg.url).password, password.reveal() if password else None]
        register_secrets([p for p in shown if p])
        engine = create_engine(
            cfg.url,
            pool_size=cfg.pool_size,
            connect_timeout=cfg.connect_timeout.total_seconds(),
            background_checkpoint=background_checkpoint,
            password=password.reveal() if password is not None else None,
            create_missing=create_missing,
        )
        return cls(
            engine,
            required_file=None if create_missing else sqlite_path(cfg.url),
            url=normalize_database_url(cfg.url),
        )

    def _check_exists(self) -> None:
        if self.required_file is not None and not self.required_file.exists():
            raise LedgerMissing(
                f"no ledger at {self.required_file} (is the path right? "
                "`share-scheduler db upgrade` creates a new one)"
            )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def url(self) -> str:
        return self._url

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        self._check_exists()
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (OperationalError, DBAPIError, OSError) as exc:
            if isinstance(exc, DBAPIError) and not _is_unavailable(exc):
                raise
            raise LedgerUnavailable(f"ledger unavailable: {_short(exc)}") from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction that commits on success and rolls back on error."""
        self._check_exists()
        if self._write_lock is not None:
            await self._write_lock.acquire()
        try:
            async with self.engine.connect() as raw:
                conn = await raw.execution_options(ledger_write=True)
                async with conn.begin():
                    yield conn
        except (OperationalError, DBAPIError, OSError) as exc:
            if isinstance(exc, DBAPIError) and not _is_unavailable(exc):
                raise
            raise LedgerUnavailable(f"ledger unavailable: {_short(exc)}") from exc
        finally:
            if self._write_lock is not None:
                self._write_lock.release()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _is_unavailable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True
    text = str(exc.orig).lower() if exc.orig is not None else ""
    return any(w in text for w in ("connection", "terminating", "shut down", "server closed"))


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
