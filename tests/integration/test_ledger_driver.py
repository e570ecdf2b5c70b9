"""Driver-level statements (claims, webhook batches) store and read what SQLAlchemy Core would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from scheduler.core.event import ChatActivity
from scheduler.core.status import CardState, ChatStatus
from scheduler.errors import LedgerUnavailable
from scheduler.ingest.events import parse_event
from scheduler.ledger.driver import Driver, Statement, codec, driver_of
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.ingest import CHAT_DEFAULTS, merge_all, record_events, upsert_chats
from scheduler.ledger.models import webhook_events_table
from tests.factories import EVENT_LINE as LINE
from tests.factories import message_event, policy

NOW = datetime(2026, 5, 4, 15, 0, 0, 123456, tzinfo=UTC)


async def _core_rows(ledger: Ledger) -> dict[str, dict[str, Any]]:
    async with ledger.read() as conn:
        rows = await conn.execute(sa.select(chats).order_by(chats.c.chat_id))
        return {row.chat_id: dict(row._mapping) for row in rows}


async def test_rows_written_by_driver_read_back_through_core(ledger: Ledger) -> None:
    pol = policy()
    sent = NOW - timedelta(hours=3, microseconds=7)
    acts = {
        "a": [ChatActivity("a", line=LINE, outbound_at=sent, service="iMessage")],
        "b": [
            ChatActivity("b", line=LINE, recipients=("+14155550123",), is_group=True),
            ChatActivity("b", inbound_at=sent, opted_out=True, opted_out_at=sent),
        ],
    }
    async with ledger.write() as conn:
        counts = await upsert_chats(conn, {k: merge_all(v) for k, v in acts.items()}, pol, NOW)
    assert (counts.created, counts.updated) == (2, 0)
    rows = await _core_rows(ledger)
    assert set(rows) == {"a", "b"}
    a, b = rows["a"], rows["b"]
    assert set(a) == set(CHAT_DEFAULTS) | {"chat_id", "created_at", "updated_at"}
    assert a["first_outbound_at"] == a["last_outbound_at"] == sent
    assert a["created_at"] == a["updated_at"] == NOW
    assert a["created_at"].tzinfo is not None
    assert a["is_group"] is False and b["is_group"] is True
    assert a["status"] == ChatStatus.active and b["status"] == ChatStatus.opted_out
    assert b["recipients"] == "+14155550123" and b["last_inbound_at"] == sent
    async with ledger.read() as conn:
        line = (await conn.execute(sa.select(lines).where(lines.c.number == LINE))).one()
    assert line.card_state == CardState.unknown

    # A second merge reads the rows back through the driver: an unchanged chat is not written.
    later = NOW + timedelta(minutes=5)
    async with ledger.write() as conn:
        again = await upsert_chats(
            conn,
            {
                "a": merge_all(acts["a"]),
                "b": merge_all([ChatActivity("b", outbound_at=later)]),
            },
            pol,
            later,
        )
    assert (again.created, again.updated, again.unchanged) == (0, 1, 1)
    after = await _core_rows(ledger)
    assert after["a"] == a
    assert after["b"]["last_outbound_at"] == later and after["b"]["updated_at"] == later
    assert after["b"]["created_at"] == NOW


async def test_stored_values_match_core_on_sqlite(sqlite_url: str) -> None:
    """SQLite compares stored times as text: the driver must store Core's exact format."""
    from scheduler.ledger.engine import create_engine

    ledger = Ledger(create_engine(sqlite_url, pool_size=1))
    try:
        sent = NOW - timedelta(days=1)
        async with ledger.write() as conn:
            await upsert_chats(
                conn,
                {"d": merge_all([ChatActivity("d", line=LINE, outbound_at=sent)])},
                policy(),
                NOW,
            )
            core = dict(CHAT_DEFAULTS)
            core.update(
                chat_id="c",
                line=LINE,
                first_outbound_at=sent,
                last_outbound_at=sent,
                created_at=NOW,
                updated_at=NOW,
            )
            await conn.execute(sa.insert(chats), [core])
            raw = {
                row[0]: tuple(row[1:])
                for row in await conn.exec_driver_sql(
                    "SELECT chat_id, first_outbound_at, created_at, is_group, status FROM chats"
                )
            }
        assert raw["c"] == raw["d"]
    finally:
        await ledger.dispose()


async def test_event_ids_are_recorded_once(ledger: Ledger) -> None:
    events = [
        parse_event(message_event("message.sent", event_id="e1", chat_id="x")),
        parse_event(message_event("message.sent", event_id="e2", chat_id="x")),
        parse_event(message_event("message.sent", event_id="e1", chat_id="x")),
        parse_event({"event_id": "e3", "event_type": "noise"}),
    ]
    assert await record_events(ledger, events, policy(), NOW) == [
        "applied",
        "applied",
        "duplicate",
        "ignored",
    ]
    assert await record_events(ledger, events[1:], policy(), NOW) == ["duplicate"] * 3
    async with ledger.read() as conn:
        rows = (await conn.execute(sa.select(webhook_events_table))).all()
    assert sorted((r.event_id, r.event_type, r.received_at) for r in rows) == [
        ("e1", "message.sent", NOW),
        ("e2", "message.sent", NOW),
        ("e3", "noise", NOW),
    ]


async def test_driver_errors_are_classified_as_core_errors(ledger: Ledger) -> None:
    """A failing driver statement reaches the ledger as a Core one would: same exception."""
    async with ledger.write() as conn:
        await conn.exec_driver_sql("ALTER TABLE webhook_events RENAME TO webhook_events_gone")
    event = parse_event(message_event("message.sent", event_id="e1"))
    with pytest.raises((LedgerUnavailable, sa.exc.DBAPIError)) as by_core:
        async with ledger.write() as conn:
            await conn.execute(sa.select(webhook_events_table))
    with pytest.raises((LedgerUnavailable, sa.exc.DBAPIError)) as by_driver:
        await record_events(ledger, [event], policy(), NOW)
    assert type(by_driver.value) is type(by_core.value)


async def test_statements_run_together_in_order_and_fail_as_one(ledger: Ledger) -> None:
    """run_all: each statement sees the ones before it; a failing one fails the transaction."""
    names = ["event_id", "event_type", "received_at"]

    def insert(db: Driver) -> Statement:
        table = codec(webhook_events_table, db.dialect)
        sql = f"INSERT INTO {table.name} ({table.columns(names)}) VALUES ({db.marks(3)})"
        bind = table.binder(names)
        return Statement(sql, [bind([i, "message.sent", NOW]) for i in ids], many=True)

    ids = ["e1", "e2"]
    async with ledger.write() as conn:
        db = await driver_of(conn)
        table = codec(webhook_events_table, db.dialect)
        select = f"SELECT {table.q['event_id']} FROM {table.name} ORDER BY 1"
        results = await db.run_all([insert(db), Statement(select, [], rows=True)])
    assert results[0] == []
    assert [row[0] for row in results[1]] == ["e1", "e2"]

    async def insert_twice() -> None:
        async with ledger.write() as conn:
            db = await driver_of(conn)
            await db.run_all([insert(db), insert(db)])

    ids = ["e3"]
    with pytest.raises((LedgerUnavailable, sa.exc.DBAPIError)):
        await insert_twice()  # the second insert repeats e3: the first is rolled back too
    async with ledger.read() as conn:
        stored = await conn.execute(sa.select(webhook_events_table.c.event_id).order_by("event_id"))
        assert [row[0] for row in stored] == ["e1", "e2"]


async def test_a_sqlite_transaction_costs_one_call_into_the_driver_thread_per_step(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN is one call into aiosqlite's thread (not three: cursor, execute, close), and a
    connection checked in after its commit is not rolled back again: under a busy event loop
    every call is a wait for the loop's next turns."""
    import aiosqlite

    from scheduler.ledger.engine import create_engine

    calls: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    ledger = Ledger(create_engine(sqlite_url, pool_size=1))
    try:
        async with ledger.write() as conn:  # the pool's first connection: set-up calls
            await (await driver_of(conn)).fetch("SELECT 1", ())
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        async with ledger.write() as conn:
            await (await driver_of(conn)).fetch("SELECT count(*) FROM chats", ())
        assert calls == ["execute", "_execute_fetchall", "commit"]
    finally:
        await ledger.dispose()


async def test_a_sqlite_connection_checked_in_inside_a_transaction_is_rolled_back(
    sqlite_url: str,
) -> None:
    """The pool's reset skips the rollback only when no transaction is open."""
    from scheduler.ledger.engine import create_engine

    ledger = Ledger(create_engine(sqlite_url, pool_size=1))
    try:
        async with ledger.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            await raw.execute("BEGIN IMMEDIATE")
            await raw.execute("DELETE FROM chats")
            await raw.execute(
                "INSERT INTO lines (number, created_at, updated_at) VALUES ('+1', '', '')"
            )
        # The same (only) connection again: its transaction was rolled back, not carried on.
        async with ledger.write() as conn:
            db = await driver_of(conn)
            assert await db.fetch("SELECT count(*) FROM lines WHERE number = '+1'", ()) == [(0,)]
    finally:
        await ledger.dispose()
