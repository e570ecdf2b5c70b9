"""Today's Linq event shapes through the webhook endpoint into a real ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from scheduler.http.app import create_app
from scheduler.http.runtime import Runtime
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats
from scheduler.testing import standard_delivery
from tests.integration.test_webhook_app import _runtime
from tests.integration.test_webhook_signatures import NEW
from tests.unit import test_event_shapes as shapes


@pytest.fixture
async def woken() -> list[str]:
    return []


@pytest.fixture
async def runtime(ledger: Ledger, woken: list[str]) -> Runtime:
    rt = _runtime(ledger, [NEW])
    rt.on_card_event = woken.append
    return rt


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://daemon"
    ) as c:
        yield c


async def deliver(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    return await client.post("/webhooks/linq", **standard_delivery(payload, NEW))


async def chat_rows(ledger: Ledger) -> dict[str, Any]:
    async with ledger.read() as conn:
        return {r.chat_id: r for r in await conn.execute(sa.select(chats))}


async def test_a_queued_message_counts_at_the_event_time(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    payload = shapes.message(sent_at=None)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    payload["created_at"] = at.isoformat()
    resp = await deliver(client, payload)
    assert resp.json() == {"ok": True, "result": "applied"}
    row = (await chat_rows(ledger))["chat-1"]
    assert row.first_outbound_at.replace(tzinfo=UTC) == at


async def test_message_failed_is_acknowledged_and_writes_no_chat(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    payload = shapes.envelope(
        "message.failed",
        {"code": 4001, "failed_at": "2026-05-04T15:00:00Z", "chat_id": "chat-1"},
        event_id="ev-failed",
    )
    resp = await deliver(client, payload)
    assert resp.json() == {"ok": True, "result": "ignored"}
    assert await chat_rows(ledger) == {}


async def test_participants_keep_the_group_right(client: httpx.AsyncClient, ledger: Ledger) -> None:
    await deliver(client, shapes.chat_created(recipients=(shapes.ALICE,)))
    added = shapes.participant("participant.added", shapes.BOB, event_id="p-add")
    assert (await deliver(client, added)).json()["result"] == "applied"
    row = (await chat_rows(ledger))["chat-1"]
    assert (row.is_group, row.recipients) == (True, f"{shapes.BOB},{shapes.ALICE}")
    removed = shapes.participant("participant.removed", shapes.ALICE, event_id="p-rm")
    assert (await deliver(client, removed)).json()["result"] == "applied"
    assert (await chat_rows(ledger))["chat-1"].recipients == shapes.BOB


async def test_card_account_events_wake_the_card_check_of_their_line(
    client: httpx.AsyncClient, ledger: Ledger, woken: list[str]
) -> None:
    for event_type in ("contact_card.created", "contact_card.updated", "contact_card.deleted"):
        resp = await deliver(client, shapes.card_event(event_type))
        assert resp.json() == {"ok": True, "result": "ignored"}
    received = shapes.envelope(
        "contact_card.received",
        {"chat_id": "chat-1", "contact_card": {"first_name": "Bob"}},
        event_id="ev-received",
    )
    assert (await deliver(client, received)).json()["result"] == "ignored"
    assert woken == [shapes.LINE] * 3
    bad = shapes.card_event("contact_card.updated", phone_number="not-a-number")
    bad["event_id"] = "ev-bad-card"
    resp = await deliver(client, bad)
    assert resp.status_code == 400
    assert "data.phone_number" in resp.json()["error"]
    assert woken == [shapes.LINE] * 3
    assert await chat_rows(ledger) == {}
