"""Signed webhook delivery, the way Linq does it, with a short retry schedule for tests.

Every delivery is signed both ways, as Linq does during the deprecation of its legacy
headers: Standard Webhooks (``webhook-id`` = the event id, ``webhook-timestamp``,
``webhook-signature``) when the secret is a ``whsec_`` one, and ``X-Webhook-*`` always.

Events are spread over a few worker queues by their key (a chat id or a card's number): one
key always lands on the same worker, which delivers its events one after the other, so a
chat's events arrive in creation order while different chats are delivered in parallel. A
delivery that fails with 5xx, 429 or a network error is retried with a doubling backoff,
blocking only its own worker; other 4xx answers are final.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections import deque
from typing import Any

import httpx
from standardwebhooks import Webhook

from scheduler import clock
from scheduler.ingest.signing import sign, sign_standard, standard_webhook
from scheduler.sim.model import Event, iso
from scheduler.sim.settings import SimSettings
from scheduler.validate import STANDARD_PREFIX

WEBHOOK_VERSION = "2026-02-03"


def envelope(event: Event, partner_id: str) -> dict[str, Any]:
    return {
        "api_version": "v3",
        "event_id": event.event_id,
        "event_type": event.event_type,
        "created_at": iso(event.created_at),
        "trace_id": event.trace_id,
        "partner_id": partner_id,
        "webhook_version": WEBHOOK_VERSION,
        "data": event.data,
    }


def _standard_signer(secret: str | None) -> Webhook | None:
    """The Standard Webhooks signer of a ``whsec_`` secret; None for a legacy-only secret."""
    if secret is None or not secret.startswith(STANDARD_PREFIX):
        return None
    return standard_webhook(secret)


def _retryable(status: int) -> bool:
    return status >= 500 or status == 429


class WebhookDispatcher:
    """Queues events and POSTs them, signed, to the configured URL."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.url = settings.webhook_url
        self.secret = settings.webhook_secret
        self._standard = _standard_signer(self.secret)
        self.enabled = settings.webhook_url is not None
        self.pending = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.attempts = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=1000)
        self._queues: list[asyncio.Queue[Event]] = [
            asyncio.Queue() for _ in range(settings.webhook_workers)
        ]
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def configure(self, *, enabled: bool, url: str | None, secret: str | None) -> None:
        if url is not None:
            self.url = url
        if secret is not None:
            self._standard = _standard_signer(secret)
            self.secret = secret
        self.enabled = enabled and self.url is not None

    def submit(self, event: Event) -> None:
        if not self.enabled:
            self.dropped += 1
            return
        index = zlib.crc32(event.key.encode()) % len(self._queues)
        self._queues[index].put_nowait(event)
        self.pending += 1
        self._idle.clear()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.settings.webhook_timeout)
        self._workers = [asyncio.create_task(self._work(q)) for q in self._queues]

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self, within: float) -> bool:
        """Wait until every queued event is delivered or given up; False if still busy."""
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "url": self.url,
            "pending": self.pending,
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "attempts": self.attempts,
        }

    async def _work(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            try:
                await self._deliver(event)
            finally:
                self.pending -= 1
                if self.pending == 0:
                    self._idle.set()

    async def _deliver(self, event: Event) -> None:
        body = json.dumps(envelope(event, self.settings.partner_id), separators=(",", ":"))
        raw = body.encode()
        delay = self.settings.webhook_backoff
        outcome = "gave_up"
        status: int | None = None
        attempt = 0
        for attempt in range(1, self.settings.webhook_max_attempts + 1):
            url = self.url
            if url is None or self._client is None:
                outcome = "no_url"
                break
            self.attempts += 1
            status = await self._post(url, event, raw)
            if status is not None and 200 <= status < 300:
                outcome = "delivered"
                break
            if status is not None and not _retryable(status):
                outcome = "rejected"
                break
            if attempt < self.settings.webhook_max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.webhook_backoff_max)
        if outcome == "delivered":
            self.delivered += 1
        else:
            self.failed += 1
        self.recent.append(
            {
                "event_id": event.event_id,
                "event_type": event.event_type,
                "key": event.key,
                "outcome": outcome,
                "status": status,
                "attempts": attempt,
            }
        )

    async def _post(self, url: str, event: Event, raw: bytes) -> int | None:
        assert self._client is not None
        # Re-stamped on every attempt, like a sender that signs each request it makes.
        timestamp = int(clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Event": event.event_type,
            "X-Webhook-Subscription-ID": self.settings.subscription_id,
            "X-Webhook-Timestamp": str(timestamp),
        }
        if self.secret:
            headers["X-Webhook-Signature"] = sign(self.secret, timestamp, raw)
        if self._standard is not None:
            headers["webhook-id"] = event.event_id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign_standard(
                self._standard, event.event_id, timestamp, raw
            )
        try:
            response = await self._client.post(url, content=raw, headers=headers)
        except httpx.HTTPError:
            return None
        return response.status_code
