"""The ledger's PostgreSQL connections: sessions in UTC, and a ping only after an idle spell."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from scheduler.errors import LedgerUnavailable
from scheduler.ledger.claim_sql import ClaimSQL
from scheduler.ledger.engine import Ledger, create_engine
from tests.conftest import PG_DSN
from tests.factories import add_chat, add_line

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 8, 6, 30, 0, 250000, tzinfo=UTC)
LINE = "+14155550100"


def _admin(statement: str, *params: object) -> None:
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(statement, params)


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture
async def ledger_in_new_york(pg_url: str) -> AsyncIterator[Ledger]:
    """A ledger whose database's sessions default to New York time (as a server configured
    for its region would): what its times are read as must not depend on it."""
    _admin(f"ALTER DATABASE {_database(pg_url)} SET timezone TO 'America/New_York'")
    ledger = Ledger(create_engine(pg_url, pool_size=2))
    yield ledger
    await ledger.dispose()


async def test_times_come_back_in_utc_whatever_the_databases_time_zone(
    ledger_in_new_york: Ledger,
) -> None:
    ledger = ledger_in_new_york
    await add_line(ledger, LINE, NOW)
    await add_chat(ledger, "chat-1", LINE, "+12125550100", now=NOW, next_share_at=NOW)
    async with ledger.read() as conn:
        zone = (await conn.execute(sa.text("SHOW TimeZone"))).scalar_one()
        sql = await ClaimSQL.open(conn)
        (state,) = await sql.chats(["chat-1"])
    assert zone == "UTC"
    # The same instants as written, with the daemon clock's own zone object: compared with
    # ``now`` without a zone lookup.
    assert state.next_share_at == NOW and state.next_share_at.tzinfo is UTC
    assert state.first_outbound_at == NOW - timedelta(hours=1)
    assert state.first_outbound_at is not None and state.first_outbound_at.tzinfo is UTC


async def _backend_pid(ledger: Ledger) -> int:
    async with ledger.read() as conn:
        return int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_idle_past_the_threshold_is_pinged_and_replaced_if_dead(
    pg_url: str,
) -> None:
    ledger = Ledger(create_engine(pg_url, pool_size=1, ping_after_idle=0.0))
    try:
        first = await _backend_pid(ledger)
        _admin("SELECT pg_terminate_backend(%s)", first)
        # The ping finds it dead: the pool lends a new connection, the caller sees nothing.
        second = await _backend_pid(ledger)
        assert second != first
    finally:
        await ledger.dispose()


async def test_a_connection_used_moments_ago_is_lent_without_a_ping(pg_url: str) -> None:
    ledger = Ledger(create_engine(pg_url, pool_size=1, ping_after_idle=3600.0))
    try:
        first = await _backend_pid(ledger)
        _admin("SELECT pg_terminate_backend(%s)", first)
        # Not pinged: its death is found by the transaction that uses it, which fails as the
        # ledger being unavailable (the pass tries again at its next tick, a webhook is
        # answered 503 and sent again) ...
        with pytest.raises(LedgerUnavailable):
            await _backend_pid(ledger)
        # ... and the pool, told of the disconnect, lends a new connection to the next one.
        assert await _backend_pid(ledger) != first
    finally:
        await ledger.dispose()
