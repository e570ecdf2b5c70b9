"""What the HTTP side shares with the daemon: the current schedule, secrets, ledger and metrics.

Its own module so that the app and the webhook endpoint both depend on it, not on each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from scheduler.config import Schedule, Secrets
from scheduler.core.rule import Policy
from scheduler.ingest.signing import WebhookVerifier
from scheduler.ingest.skew import SkewEstimate
from scheduler.ingest.writer import EventWriter
from scheduler.ledger.engine import Ledger
from scheduler.metrics import Metrics

log = structlog.get_logger("scheduler.http")


@dataclass
class Runtime:
    """What the HTTP side needs from the daemon; the daemon swaps fields on reload."""

    schedule: Schedule
    secrets: Secrets
    policy: Policy
    ledger: Ledger
    metrics: Metrics
    readiness: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
    on_card_event: Callable[[str], None] = field(default=lambda _number: None)
    writer: EventWriter | None = field(default=None, init=False, repr=False)
    # The verifier of the current secrets, with the Secrets object it was built from.
    _verifier: tuple[Secrets, WebhookVerifier] | None = field(default=None, init=False, repr=False)
    clock_skew: SkewEstimate = field(default_factory=SkewEstimate, init=False, repr=False)

    def event_writer(self) -> EventWriter:
        if self.writer is None:
            self.writer = EventWriter(self.ledger, lambda: self.policy)
        return self.writer

    def webhook_secrets(self) -> list[str]:
        return [s.reveal() for s in self.secrets.webhook_secrets]

    def webhook_verifier(self) -> WebhookVerifier:
        """Built once per set of secrets (a reload swaps ``secrets``), not per delivery."""
        cached = self._verifier
        if cached is None or cached[0] is not self.secrets:
            cached = self._verifier = (self.secrets, WebhookVerifier(self.webhook_secrets()))
        return cached[1]

    def card_event(self, number: str) -> None:
        self.on_card_event(number)

    def observe_webhook_clock(self, sent_unix: float, now: datetime) -> None:
        """One correctly signed delivery's timestamp (any signing scheme), stale or not."""
        estimate = self.clock_skew.observe(sent_unix, now.timestamp())
        self.metrics.webhook_clock_skew.set(estimate)
        if self.clock_skew.changed(estimate):
            tolerance = self.schedule.webhooks.tolerance.total_seconds()
            level = log.warning if abs(estimate) >= tolerance / 2 else log.info
            level(
                "webhook.clock_skew",
                offset_seconds=round(estimate, 1),
                tolerance_seconds=tolerance,
                deliveries=len(self.clock_skew.offsets),
            )
