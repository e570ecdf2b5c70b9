"""The webhook endpoint against a real ledger: signatures, dedupe, ordering, answers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from scheduler.config import Schedule, Secret, Secrets
from scheduler.http.app import create_app
from scheduler.http.runtime import Runtime
from scheduler.ingest.signing import sign
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chats, lines
from scheduler.metrics import Metrics
from scheduler.testing import legacy_delivery
from tests.factories import EVENT_LINE as LINE
from tests.factories import message_event, policy

SECRET = "whsec-test-0123456789"
OLD_SECRET = "whsec-old-9876543210"


async def _ready() -> tuple[bool, dict[str, Any]]:
    return True, {}


def _runtime(ledger: Ledger, secrets: list[str]) -> Runtime:
    return Runtime(
        schedule=Schedule(),
        secrets=Secrets(Secret("tok", "t"), [Secret(s, f"s{i}") for i, s in enumerate(secrets)]),
        policy=policy(),
        ledger=ledger,
        metrics=Metrics(),
        readiness=_ready,
    )


@pytest.fixture
async def client(ledger: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_runtime(ledger, [SECRET, OLD_SECRET]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://daemon"
    ) as c:
        yield c


def _signed(payload: Any, secret: str = SECRET, ts: int | None = None) -> dict[str, Any]:
    return legacy_delivery(payload, secret, timestamp=ts)


async def _chat_count(ledger: Ledger) -> int:
    async with ledger.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(chats))).scalar_one())


async def test_signed_event_creates_chat_once(client: httpx.AsyncClient, ledger: Ledger) -> None:
    payload = message_event("message.sent", sent_at=datetime.now(UTC) - timedelta(minutes=1))
    first = await client.post("/webhooks/linq", **_signed(payload))
    again = await client.post("/webhooks/linq", **_signed(payload))
    assert first.status_code == 200 and first.json()["result"] == "applied"
    assert again.status_code == 200 and again.json()["result"] == "duplicate"
    async with ledger.read() as conn:
        row = (await conn.execute(sa.select(chats))).one()
        line = (await conn.execute(sa.select(lines.c.number))).scalar_one()
    assert row.chat_id == "chat-1"
    assert row.line == LINE == line
    # The line's card is not known active yet: nothing is scheduled.
    assert row.next_share_at is None


async def test_rotated_secret_is_accepted(client: httpx.AsyncClient) -> None:
    resp = await client.post("/webhooks/linq", **_signed(message_event("message.sent"), OLD_SECRET))
    assert resp.status_code == 200


@pytest.mark.parametrize(
    "mutate",
    ["wrong_secret", "stale", "missing", "tampered"],
)
async def test_bad_signatures_are_401_and_write_nothing(
    client: httpx.AsyncClient, ledger: Ledger, mutate: str
) -> None:
    payload = message_event("message.sent")
    kwargs = _signed(
        payload,
        "not-the-secret" if mutate == "wrong_secret" else SECRET,
        ts=int(time.time()) - 3600 if mutate == "stale" else None,
    )
    if mutate == "missing":
        del kwargs["headers"]["X-Webhook-Signature"]
    if mutate == "tampered":
        kwargs["content"] = kwargs["content"].replace(b"chat-1", b"chat-2")
    resp = await client.post("/webhooks/linq", **kwargs)
    assert resp.status_code == 401
    assert await _chat_count(ledger) == 0


async def test_malformed_signed_body_is_400(client: httpx.AsyncClient, ledger: Ledger) -> None:
    body = b'{"event_id": "x", "event_type": "message.sent", '
    stamp = int(time.time())
    resp = await client.post(
        "/webhooks/linq",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Webhook-Timestamp": str(stamp),
            "X-Webhook-Signature": sign(SECRET, stamp, body),
        },
    )
    assert resp.status_code == 400
    assert await _chat_count(ledger) == 0


async def test_too_large_and_wrong_type(client: httpx.AsyncClient) -> None:
    big = {"event_id": "x", "event_type": "noise", "data": {"pad": "a" * 2_000_000}}
    assert (await client.post("/webhooks/linq", **_signed(big))).status_code == 413
    kwargs = _signed(message_event("message.sent"))
    kwargs["headers"]["Content-Type"] = "text/plain"
    assert (await client.post("/webhooks/linq", **kwargs)).status_code == 415


async def test_ledger_down_answers_503(tmp_path: Any) -> None:
    broken = Ledger(create_engine("postgresql://postgres@127.0.0.1:1/none", connect_timeout=1))
    app = create_app(_runtime(broken, [SECRET]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as c:
        resp = await c.post("/webhooks/linq", **_signed(message_event("message.sent")))
    await broken.dispose()
    assert resp.status_code == 503


async def test_health_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "alive"}
    livez = await client.get("/livez")
    assert (livez.status_code, livez.json()) == (200, {"status": "alive"})
    await client.post("/webhooks/linq", **_signed(message_event("message.sent")))
    text = (await client.get("/metrics")).text
    assert 'share_scheduler_webhook_events_total{result="applied",type="message.sent"} 1.0' in text


async def test_other_methods_on_the_webhook_path_are_405(client: httpx.AsyncClient) -> None:
    assert (await client.get("/webhooks/linq")).status_code == 405
    assert (await client.put("/webhooks/linq", content=b"{}")).status_code == 405


async def test_unexpected_error_answers_500_and_reaches_the_server(ledger: Ledger) -> None:
    runtime = _runtime(ledger, [SECRET])

    async def broken(_event: object) -> str:
        raise RuntimeError("boom")

    runtime.event_writer().submit = broken  # type: ignore[method-assign,assignment]
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://d") as c:
        resp = await c.post("/webhooks/linq", **_signed(message_event("message.sent")))
    assert resp.status_code == 500
    assert resp.text == "Internal Server Error"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://d") as c:
        with pytest.raises(RuntimeError, match="boom"):
            await c.post("/webhooks/linq", **_signed(message_event("message.sent")))


async def test_body_in_chunks_and_client_gone(ledger: Ledger) -> None:
    """Raw ASGI: a body in several messages is one body; a client gone gets no answer."""
    app = create_app(_runtime(ledger, [SECRET]))
    signed = _signed(message_event("message.sent"))
    body: bytes = signed["content"]
    headers = [(k.lower().encode(), v.encode()) for k, v in signed["headers"].items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/linq",
        "raw_path": b"/webhooks/linq",
        "query_string": b"",
        "headers": headers,
        "server": ("test", 80),
        "client": ("test", 1234),
        "root_path": "",
    }
    for messages in (
        [
            {"type": "http.request", "body": body[:10], "more_body": True},
            {"type": "http.request", "body": body[10:], "more_body": False},
        ],
        [
            {"type": "http.request", "body": body[:10], "more_body": True},
            {"type": "http.disconnect"},
        ],
    ):
        queue = list(messages)
        sent: list[dict[str, Any]] = []

        async def receive(q: list[dict[str, Any]] = queue) -> dict[str, Any]:
            return q.pop(0)

        async def send(message: dict[str, Any], out: list[dict[str, Any]] = sent) -> None:
            out.append(message)

        await app(scope, receive, send)
        if messages[-1]["type"] == "http.disconnect":
            assert sent == []
        else:
            assert sent[0]["status"] == 200
            assert json.loads(sent[1]["body"]) == {"ok": True, "result": "applied"}
            assert dict(sent[0]["headers"])[b"content-type"] == b"application/json"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("data", "chat", "id"), "line\nbreak", "data.chat.id"),
        (("data", "chat", "id"), "\u202eevil", "data.chat.id"),
        (("data", "chat", "id"), "<script>", "data.chat.id"),
        (("data", "sent_at"), "2026-05-01T08:00:00\u0000", "data.sent_at"),
        (("data", "chat", "owner_handle", "handle"), "not-a-number", "owner_handle.handle"),
        (("data", "chat", "is_group"), "yes", "data.chat.is_group"),
    ],
)
async def test_a_signed_event_with_a_bad_field_is_answered_400_naming_the_field(
    client: httpx.AsyncClient, ledger: Ledger, path: tuple[str, ...], value: Any, field: str
) -> None:
    payload = message_event("message.sent", sent_at=datetime.now(UTC) - timedelta(minutes=1))
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    answer = await client.post("/webhooks/linq", **_signed(payload))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert field in error, error
    assert "not valid JSON" not in error
    assert await _chat_count(ledger) == 0
