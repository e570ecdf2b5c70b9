"""The ledger on PostgreSQL: sessions in UTC, a ping only after an idle spell, a share pass
that reads the chats table by its indexes only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
import sqlalchemy as sa

from scheduler.config import Secret, SharePassConfig
from scheduler.core.status import ChatStatus
from scheduler.errors import LedgerUnavailable
from scheduler.ledger.claim_sql import ClaimSQL
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.gauges import read_ledger_gauges
from scheduler.linq.client import LinqClient
from scheduler.share.share_pass import SharePass
from tests.conftest import PG_DSN
from tests.factories import add_chat, add_line, policy

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
        _admin("SELECT pg_terminate_backend(%s, 5000)", first)  # waits until it has ended
        # The ping finds it dead: the pool lends a new connection, the caller sees nothing.
        second = await _backend_pid(ledger)
        assert second != first
    finally:
        await ledger.dispose()


async def test_a_connection_used_moments_ago_is_lent_without_a_ping(pg_url: str) -> None:
    ledger = Ledger(create_engine(pg_url, pool_size=1, ping_after_idle=3600.0))
    try:
        first = await _backend_pid(ledger)
        _admin("SELECT pg_terminate_backend(%s, 5000)", first)  # waits until it has ended
        # Not pinged: its death is found by the transaction that uses it, which fails as the
        # ledger being unavailable (the pass tries again at its next tick, a webhook is
        # answered 503 and sent again) ...
        with pytest.raises(LedgerUnavailable):
            await _backend_pid(ledger)
        # ... and the pool, told of the disconnect, lends a new connection to the next one.
        assert await _backend_pid(ledger) != first
    finally:
        await ledger.dispose()


def _seq_scans(url: str, table: str = "chats") -> int:
    """Sequential scans of ``table`` so far, by sessions that have ended."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as admin:
        row = admin.execute(
            "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = %s", (table,)
        ).fetchone()
    return int(row[0]) if row else 0


def _wait_for_backends_to_end(dbname: str) -> None:
    """Until the ledger's sessions have exited: each flushes its table statistics as it ends."""
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as admin:
        for _ in range(200):
            left = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
            ).fetchone()
            if left is not None and left[0] == 0:
                return
            time.sleep(0.025)
    raise AssertionError(f"sessions of {dbname} still open")


def _fill_idle_chats(url: str, count: int = 20_000) -> None:
    """``count`` chats of one line, shared and due again in ten years; their statistics
    gathered, so that the planner knows the table is large and the due range empty."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO chats (chat_id, line, recipients, is_group, service,"
            " first_outbound_at, last_outbound_at, share_count, status, consecutive_failures,"
            " next_share_at, created_at, updated_at)"
            " SELECT 'idle-' || i, %s, '+1212555' || lpad((i %% 10000)::text, 4, '0'), false,"
            " 'iMessage', %s, %s, 1, 'active', 0, %s, %s, %s FROM generate_series(1, %s) i",
            (LINE, NOW, NOW, NOW + timedelta(days=3650), NOW, NOW, count),
        )
        conn.execute("VACUUM ANALYZE chats")
    _wait_for_backends_to_end(_database(url))


async def test_a_share_pass_reads_the_chats_by_index_only(pg_url: str) -> None:
    """A pass over a large ledger with nothing due reads the due range by its index, and
    nothing else of the chats table: a sweep for expired claims (unindexed claim columns)
    read the whole table at every pass, seconds at 10M chats."""
    dbname = _database(pg_url)
    _fill_idle_chats(pg_url)
    before = _seq_scans(pg_url)
    ledger = Ledger(create_engine(pg_url, pool_size=2))
    share_pass = SharePass(
        ledger=ledger,
        client=LinqClient("http://127.0.0.1:9", Secret("unused", "test")),
        config=SharePassConfig(),
        policy=policy(),
        instance="test",
    )
    try:
        report = await share_pass.run()
    finally:
        await ledger.dispose()
    assert (report.claimed, report.interrupted) == (0, False)
    _wait_for_backends_to_end(dbname)
    assert _seq_scans(pg_url) == before


async def test_the_ledger_gauges_read_the_chats_table_once(pg_url: str) -> None:
    """The gauges (read with every card check, every minute by default) count the chats by
    line and status in one scan of the table and read the rest by index. They used to run
    ``ledger stats`` whole: four scans (by status, by service, the next due chat, the claims in
    flight), several seconds of the database's time every minute at 10M chats. The recipients
    held are counted by their partial index, not by a scan of everyone who ever wrote in."""
    dbname = _database(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lines (number, paused, card_state, card_write_log, card_write_failures,"
            " created_at, updated_at) VALUES (%s, false, 'active', '[]', 0, %s, %s)",
            (LINE, NOW, NOW),
        )
        # 20,000 recipients who wrote in; of them 3 opted out (one wrote again since) and 2
        # blocked.
        conn.execute(
            "INSERT INTO recipients (handle, opted_out_at, last_inbound_at, blocked_at,"
            " created_at, updated_at) SELECT '+1646555' || lpad(i::text, 5, '0'),"
            " CASE WHEN i <= 3 THEN %(now)s END,"
            " CASE WHEN i = 3 THEN %(later)s ELSE %(now)s END,"
            " CASE WHEN i IN (4, 5) THEN %(now)s END, %(now)s, %(now)s"
            " FROM generate_series(1, 20000) i",
            {"now": NOW, "later": NOW + timedelta(hours=1)},
        )
        conn.execute("VACUUM ANALYZE recipients")
    _fill_idle_chats(pg_url)
    before = _seq_scans(pg_url)
    recipients_before = _seq_scans(pg_url, "recipients")
    ledger = Ledger(create_engine(pg_url, pool_size=2))
    try:
        gauges = await read_ledger_gauges(ledger, NOW, ZoneInfo("UTC"))
    finally:
        await ledger.dispose()
    assert [(g.line, g.chats, g.due_now) for g in gauges.lines] == [(LINE, 20_000, 0)]
    assert gauges.chats_by_status[ChatStatus.active] == 20_000
    assert (gauges.recipients_opted_out, gauges.recipients_blocked) == (2, 2)
    _wait_for_backends_to_end(dbname)
    assert _seq_scans(pg_url) - before == 1
    assert _seq_scans(pg_url, "recipients") == recipients_before
