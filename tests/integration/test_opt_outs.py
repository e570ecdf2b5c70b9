"""Opt-outs: a 403/2024 on share opts the chat out, and the recipient writing again opts it
back in, through the real share pass and the simulator, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scheduler import clock
from scheduler.config import Secret, SharePassConfig
from scheduler.core.status import ChatStatus, Outcome
from scheduler.ingest.blocked import refresh_blocked_handles
from scheduler.ingest.events import parse_event
from scheduler.ledger.claims import attempts
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats
from scheduler.ledger.ingest import record_event
from scheduler.linq.client import LinqClient
from scheduler.share.share_pass import SharePass
from scheduler.sim.settings import SimSettings
from scheduler.testing import SimHandle
from tests.factories import add_line, policy

LINE = "+14155550100"
CUSTOMER = "+12125550199"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, inside the 09:00-20:00 UTC window


@pytest.fixture(scope="module")
def sim_settings() -> SimSettings:
    return SimSettings(activation_delay=0, seed=3)


@pytest.fixture
async def client(sim_server: SimHandle, clock_file: Path) -> AsyncIterator[LinqClient]:
    clock.set_clock_file(clock_file, T0)
    async with sim_server.async_control() as control:
        await control.reset()
        await control.webhooks(enabled=False)
    async with LinqClient(sim_server.api_base, Secret(sim_server.token, "t")) as linq:
        await linq.create_contact_card(LINE, "Acme")
        yield linq


def _event(event_id: str, chat_id: str, event_type: str, at: datetime) -> dict[str, Any]:
    inbound = event_type == "message.received"
    return {
        "event_id": event_id,
        "event_type": event_type,
        "data": {
            "direction": "inbound" if inbound else "outbound",
            "service": "iMessage",
            "sent_at": at.isoformat(),
            "chat": {
                "id": chat_id,
                "is_group": False,
                "owner_handle": {"handle": LINE, "is_me": True},
                "health_status": {"status": "HEALTHY"},
            },
            "sender_handle": {"handle": CUSTOMER if inbound else LINE},
        },
    }


async def _chat(ledger: Ledger, chat_id: str) -> Any:
    async with ledger.read() as conn:
        return (await conn.execute(sa.select(chats).where(chats.c.chat_id == chat_id))).one()


async def _share_pass(ledger: Ledger, client: LinqClient) -> None:
    share = SharePass(
        ledger=ledger,
        client=client,
        config=SharePassConfig(retry_backoff=timedelta(milliseconds=10)),
        policy=policy(),
        instance="test",
    )
    await share.run()


async def test_a_2024_on_share_opts_out_until_the_recipient_writes_again(
    ledger: Ledger, client: LinqClient, sim_server: SimHandle, clock_file: Path
) -> None:
    await add_line(ledger, LINE, T0)
    async with sim_server.async_control() as control:
        chat_id = (await control.create_chat(LINE, [CUSTOMER]))["chat"]["id"]
        # The STOP reaches Linq, but its webhook never reaches the ledger.
        await control.inbound(chat_id, "STOP")
    sent = _event("e-1", chat_id, "message.sent", clock.now())
    await record_event(ledger, parse_event(sent), policy(), clock.now())
    assert (await _chat(ledger, chat_id)).next_share_at is not None

    await _share_pass(ledger, client)
    row = await _chat(ledger, chat_id)
    assert row.status == ChatStatus.opted_out
    assert row.next_share_at is None and row.last_shared_at is None
    async with ledger.read() as conn:
        [attempt] = (await conn.execute(sa.select(attempts))).all()
    assert (attempt.outcome, attempt.http_status, attempt.error_code) == (
        Outcome.rejected,
        403,
        2024,
    )

    clock.set_clock_file(clock_file, T0 + timedelta(hours=1))
    async with sim_server.async_control() as control:
        await control.inbound(chat_id, "Sorry, I did want to hear from you")
    hello = _event("e-2", chat_id, "message.received", clock.now())
    await record_event(ledger, parse_event(hello), policy(), clock.now())
    row = await _chat(ledger, chat_id)
    assert row.status == ChatStatus.active
    assert row.next_share_at is not None and row.next_share_at <= clock.now()

    await _share_pass(ledger, client)
    row = await _chat(ledger, chat_id)
    assert row.share_count == 1 and row.last_shared_at is not None
    async with sim_server.async_control() as control:
        assert [s["chat_id"] for s in await control.shares()] == [chat_id]


async def test_the_blocked_list_read_blocks_and_unblocks_the_recipient_everywhere(
    ledger: Ledger, client: LinqClient, sim_server: SimHandle, clock_file: Path
) -> None:
    await add_line(ledger, LINE, T0)
    async with sim_server.async_control() as control:
        chat_id = (await control.create_chat(LINE, [CUSTOMER]))["chat"]["id"]
        await control.block(CUSTOMER)
    created = {
        "event_id": "e-0",
        "event_type": "chat.created",
        "data": {
            "id": chat_id,
            "is_group": False,
            "service": "iMessage",
            "handles": [{"handle": LINE, "is_me": True}, {"handle": CUSTOMER, "is_me": False}],
        },
    }
    sent = _event("e-1", chat_id, "message.sent", clock.now())
    for event in (created, sent):
        await record_event(ledger, parse_event(event), policy(), clock.now())

    synced = await refresh_blocked_handles(ledger, client, policy())
    assert (synced.blocked, synced.unblocked) == (1, 0)
    row = await _chat(ledger, chat_id)
    assert row.status == ChatStatus.blocked and row.next_share_at is None
    await _share_pass(ledger, client)
    async with sim_server.async_control() as control:
        assert await control.calls() == []  # a blocked recipient is not tried

        clock.set_clock_file(clock_file, T0 + timedelta(hours=1))
        await control.block(CUSTOMER, blocked=False)
    synced = await refresh_blocked_handles(ledger, client, policy())
    assert (synced.blocked, synced.unblocked) == (0, 1)
    row = await _chat(ledger, chat_id)
    assert row.status == ChatStatus.active
    assert row.next_share_at is not None and row.next_share_at <= clock.now()  # today
    await _share_pass(ledger, client)
    async with sim_server.async_control() as control:
        assert [s["chat_id"] for s in await control.shares()] == [chat_id]
