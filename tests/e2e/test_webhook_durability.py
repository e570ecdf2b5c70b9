"""A 2xx answer to a webhook means the event is in the ledger, even if the daemon dies next.

Deliveries are posted concurrently to a real daemon process; right after some of them are
answered 2xx the daemon is killed with SIGKILL, with other deliveries still in flight. After a
restart every answered event must be in the ledger: its id recorded (a redelivery is a
duplicate) and its effect written (the chat it names exists). The unanswered ones are what
Linq retries: redelivered, they are applied.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler import clock
from scheduler.clock import CLOCK_FILE_ENV
from scheduler.demo.processes import DaemonProcess
from scheduler.ingest.signing import sign_standard, standard_webhook
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import WEBHOOK_SECRET, Stack, ledger_chats

pytestmark = pytest.mark.e2e
LINE = "+14155550100"
EVENTS = 600
CONNECTIONS = 16
# Answers to wait for before the kill: enough that several batches have committed, and few
# enough that many deliveries are still in flight.
KILL_AFTER = 150


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    s = Stack(tmp_path, DAY1_0800_NY, database_url=url)
    # This process signs with the stack's time, as the daemon checks it.
    monkeypatch.setenv(CLOCK_FILE_ENV, str(s.clock_file))
    try:
        yield s
    finally:
        s.stop()
        for daemon in s.daemons:
            print(f"--- {daemon.log_path.name} (tail) ---")
            print("\n".join(daemon.logs().splitlines()[-30:]))


def _delivery(event_id: str, chat_id: str) -> tuple[bytes, dict[str, str]]:
    at = clock.now().isoformat().replace("+00:00", "Z")
    me = {"handle": LINE, "is_me": True}
    body = json.dumps(
        {
            "api_version": "v3",
            "event_id": event_id,
            "event_type": "message.sent",
            "created_at": at,
            "webhook_version": "2026-02-03",
            "data": {
                "id": f"msg-{event_id}",
                "direction": "outbound",
                "service": "iMessage",
                "sent_at": at,
                "chat": {"id": chat_id, "is_group": False, "owner_handle": me},
                "sender_handle": me,
            },
        }
    ).encode()
    stamp = int(clock.now().timestamp())
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard(standard_webhook(WEBHOOK_SECRET), event_id, stamp, body),
    }
    return body, headers


async def _deliver_until_killed(
    daemon: DaemonProcess, deliveries: dict[str, tuple[bytes, dict[str, str]]]
) -> dict[str, str]:
    """Post every delivery over ``CONNECTIONS`` connections; SIGKILL the daemon as soon as
    ``KILL_AFTER`` have been answered 2xx. The results of the answered ones, by event id."""
    assert daemon.proc is not None
    answered: dict[str, str] = {}
    queue = list(deliveries)

    async def connection(client: httpx.AsyncClient) -> None:
        while queue:
            event_id = queue.pop()
            body, headers = deliveries[event_id]
            try:
                resp = await client.post("/webhooks/linq", content=body, headers=headers)
            except httpx.TransportError:
                return  # the daemon is gone: this delivery was never answered
            if resp.is_success:
                answered[event_id] = resp.json()["result"]
                if len(answered) >= KILL_AFTER and daemon.proc.poll() is None:
                    daemon.proc.kill()

    async with httpx.AsyncClient(base_url=daemon.base_url, timeout=30) as client:
        await asyncio.gather(*(connection(client) for _ in range(CONNECTIONS)))
    return answered


async def _redeliver(
    base_url: str, deliveries: dict[str, tuple[bytes, dict[str, str]]]
) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        results: dict[str, str] = {}
        for event_id, (body, headers) in deliveries.items():
            resp = await client.post("/webhooks/linq", content=body, headers=headers)
            assert resp.status_code == 200, resp.text
            results[event_id] = resp.json()["result"]
        return results


def test_every_event_answered_2xx_survives_a_sigkill(ledger_stack: Stack) -> None:
    stack = ledger_stack
    stack.start_sim(webhook_port=None)
    daemon = stack.add_daemon({"share_pass": {"interval": "1h"}})
    daemon.start()
    chat_of = {uuid.uuid4().hex: f"chat-{i}" for i in range(EVENTS)}
    deliveries = {event_id: _delivery(event_id, chat) for event_id, chat in chat_of.items()}

    answered = asyncio.run(_deliver_until_killed(daemon, deliveries))
    assert daemon.proc is not None
    daemon.wait(10)
    assert len(answered) >= KILL_AFTER
    assert set(answered.values()) == {"applied"}
    # The kill came while deliveries were in flight: some were never answered.
    assert len(answered) < EVENTS

    daemon.start()
    chats = {row["chat_id"] for row in ledger_chats(daemon)}
    missing = sorted(chat_of[e] for e in answered if chat_of[e] not in chats)
    assert missing == [], f"{len(missing)} chats of answered events are not in the ledger"

    # Linq redelivers what was not answered; what was answered is known already.
    again = asyncio.run(_redeliver(daemon.base_url, deliveries))
    assert {again[e] for e in answered} == {"duplicate"}
    unanswered: dict[str, Any] = {e: r for e, r in again.items() if e not in answered}
    # An unanswered delivery may still have committed before the kill (it is a duplicate
    # then); the rest are applied now.
    assert set(unanswered.values()) <= {"applied", "duplicate"}
    assert {row["chat_id"] for row in ledger_chats(daemon)} == set(chat_of.values())
