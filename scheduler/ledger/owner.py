"""One daemon per SQLite ledger: an exclusive lock on a file beside the database.

SQLite has one writer per file and the daemon serialises its writers in-process; a second
daemon on the same file would compete for the write lock and double the share passes'
bookkeeping for nothing (replicas are for PostgreSQL). The lock (``flock``) is held for the
daemon's life and released by the kernel when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from scheduler.config import normalize_database_url
from scheduler.errors import LedgerInUse


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; ``None`` for PostgreSQL or an in-memory SQLite."""
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def own_ledger(url: str) -> Iterator[Path | None]:
    """Hold the ledger's owner lock (SQLite only) for the ``with`` block; yield its path.

    Raises :class:`LedgerInUse` when another process holds it.
    """
    database = sqlite_path(url)
    if database is None:
        yield None
        return
    path = lock_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise LedgerInUse(
                f"the SQLite ledger {database} is in use by another daemon (pid {holder}, "
                f"lock {path}); one daemon per SQLite file, replicas need PostgreSQL"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
