"""Linq webhook deliveries as a test sends them: event payloads and their signature headers."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from scheduler import clock
from scheduler.ingest.signing import sign, sign_standard, standard_webhook

__all__ = [
    "event_body",
    "legacy_delivery",
    "legacy_headers",
    "message_event",
    "standard_delivery",
    "standard_headers",
]

# The line (our number) and the customer of the events :func:`message_event` builds by default.
LINE = "+14155550100"
CUSTOMER = "+12125550199"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def message_event(
    event_type: str,
    *,
    event_id: str = "ev-1",
    direction: str = "outbound",
    sent_at: datetime | None = None,
    chat_id: str = "chat-1",
    health: str = "HEALTHY",
    reconciled: bool = False,
    line: str = LINE,
    customer: str = CUSTOMER,
    service: str = "iMessage",
) -> dict[str, Any]:
    """A v3 ``message.*`` event of a one-to-one chat; ``sent_at`` defaults to now."""
    sent = clock.now() if sent_at is None else sent_at
    data: dict[str, Any] = {
        "id": "msg-1",
        "direction": direction,
        "service": service,
        "sent_at": _iso(sent),
        "chat": {
            "id": chat_id,
            "is_group": False,
            "owner_handle": {"handle": line, "is_me": True},
            "health_status": {"status": health},
        },
        "sender_handle": {"handle": customer if direction == "inbound" else line},
        "parts": [{"type": "text", "value": "hi"}],
    }
    if reconciled:
        data["reconciled_at"] = (sent + timedelta(days=2)).isoformat()
    return {
        "api_version": "v3",
        "event_id": event_id,
        "event_type": event_type,
        "created_at": sent.isoformat(),
        "webhook_version": "2026-02-03",
        "data": data,
    }


def event_body(payload: Any) -> bytes:
    """The bytes Linq would post for ``payload``."""
    return json.dumps(payload).encode()


def _stamp(timestamp: float | None) -> int:
    return int(clock.now().timestamp() if timestamp is None else timestamp)


def standard_headers(
    body: bytes, *secrets: str, webhook_id: str | None = None, timestamp: float | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``: one ``v1`` entry per ``whsec_`` secret.

    ``webhook_id`` defaults to the body's ``event_id``, as Linq sends it; ``timestamp`` (Unix
    seconds) to :func:`scheduler.clock.now`.
    """
    msg_id = json.loads(body)["event_id"] if webhook_id is None else webhook_id
    stamp = _stamp(timestamp)
    signatures = " ".join(sign_standard(standard_webhook(s), msg_id, stamp, body) for s in secrets)
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signatures,
    }


def legacy_headers(body: bytes, secret: str, *, timestamp: float | None = None) -> dict[str, str]:
    """The legacy ``X-Webhook-*`` headers for ``body``, signed with ``secret``."""
    stamp = _stamp(timestamp)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    event_type = payload.get("event_type", "") if isinstance(payload, dict) else ""
    return {
        "Content-Type": "application/json",
        "X-Webhook-Event": str(event_type),
        "X-Webhook-Timestamp": str(stamp),
        "X-Webhook-Signature": sign(secret, stamp, body),
    }


def standard_delivery(
    payload: Any, *secrets: str, webhook_id: str | None = None, timestamp: float | None = None
) -> dict[str, Any]:
    """``payload`` as Linq posts it with Standard Webhooks headers: ``client.post(url, **it)``."""
    body = event_body(payload)
    headers = standard_headers(body, *secrets, webhook_id=webhook_id, timestamp=timestamp)
    return {"content": body, "headers": headers}


def legacy_delivery(payload: Any, secret: str, *, timestamp: float | None = None) -> dict[str, Any]:
    """``payload`` as Linq posts it with legacy headers: ``client.post(url, **it)``."""
    body = event_body(payload)
    return {"content": body, "headers": legacy_headers(body, secret, timestamp=timestamp)}
