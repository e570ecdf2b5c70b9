"""Shared fixtures: real SQLite and PostgreSQL ledgers cloned from a migrated template."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from scheduler.ledger import schema
from scheduler.ledger.engine import Ledger, create_engine

PG_DSN = os.environ.get("SHARE_SCHEDULER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_url(dbname: str) -> str:
    base = PG_DSN.rsplit("/", 1)[0]
    return f"{base}/{dbname}"


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def _migrate(url: str) -> None:
    async def _run() -> None:
        ledger = Ledger(create_engine(url, pool_size=1))
        try:
            await schema.upgrade(ledger)
        finally:
            await ledger.dispose()

    asyncio.run(_run())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    _migrate(f"sqlite:///{path}")
    return path


class PgServer:
    def __init__(self) -> None:
        self.template = f"ss_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.created: list[str] = []

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)

    def create(self, template: str | None = None) -> str:
        name = f"ss_test_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            clause = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{clause}")
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, name: str) -> str:
        return _pg_url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    problem = _pg_available()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    server = PgServer()
    with server.admin() as conn:
        conn.execute(f"CREATE DATABASE {server.template}")
    _migrate(_pg_url(server.template))
    yield server
    for name in [*server.created, server.template]:
        server.drop(name)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    name = pg_server.create(template=pg_server.template)
    yield pg_server.url(name)
    pg_server.drop(name)


@pytest.fixture
def empty_pg_url(pg_server: PgServer) -> Iterator[str]:
    name = pg_server.create()
    yield pg_server.url(name)
    pg_server.drop(name)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "ledger.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> str:
    """A migrated ledger of its own for this test, on each database."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    led = Ledger(create_engine(ledger_url, pool_size=5))
    yield led
    await led.dispose()
