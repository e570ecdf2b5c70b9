"""Prometheus metrics of one daemon. Each daemon owns a registry, so tests can run several."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from scheduler.errors import LinqError, LinqTransportError


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.shares = Counter(
            "share_scheduler_shares",
            "Share claims finished, by outcome and line.",
            ["outcome", "line"],
            registry=r,
        )
        self.share_latency = Histogram(
            "share_scheduler_share_call_seconds",
            "Latency of share_contact_card calls.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.api_errors = Counter(
            "share_scheduler_api_errors",
            "Failed Linq API requests (every try), by Linq code, else HTTP status, or transport.",
            ["code"],
            registry=r,
        )
        self.pass_started = Gauge(
            "share_scheduler_pass_last_start_timestamp_seconds",
            "Start of the last share pass.",
            registry=r,
        )
        self.pass_finished = Gauge(
            "share_scheduler_pass_last_end_timestamp_seconds",
            "End of the last share pass.",
            registry=r,
        )
        self.pass_duration = Gauge(
            "share_scheduler_pass_last_duration_seconds",
            "Duration of the last share pass.",
            registry=r,
        )
        self.ambiguous_resolved = Counter(
            "share_scheduler_ambiguous_resolved",
            "Claims found without outcome, counted as shared.",
            registry=r,
        )
        self.webhook_events = Counter(
            "share_scheduler_webhook_events",
            "Webhook deliveries, by event type and result.",
            ["type", "result"],
            registry=r,
        )
        # Children of the counters hit per call or delivery, looked up once each: labels()
        # validates and takes a lock on every call.
        self._children: dict[tuple[object, ...], Any] = {}
        self.card_active = Gauge(
            "share_scheduler_card_active",
            "1 when the line's contact card is active.",
            ["line"],
            registry=r,
        )
        self.card_writes = Counter(
            "share_scheduler_card_writes",
            "Contact card writes (POST and PATCH), by line and result.",
            ["line", "result"],
            registry=r,
        )
        self.card_activation_timeouts = Counter(
            "share_scheduler_card_activation_timeouts",
            "Card writes given up on because the card did not turn active in time.",
            ["line"],
            registry=r,
        )
        self.webhook_clock_skew = Gauge(
            "share_scheduler_webhook_clock_skew_seconds",
            "This host's clock minus the webhook signer's: the median over recent correctly "
            "signed deliveries (stale ones included).",
            registry=r,
        )
        self.due_chats = Gauge(
            "share_scheduler_due_chats", "Chats due now (at the last pass).", registry=r
        )
        self.chats_by_status = Gauge(
            "share_scheduler_chats", "Chats in the ledger, by status.", ["status"], registry=r
        )

    def _child(self, metric: Counter, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def webhook_event(self, type_: str, result: str) -> Any:
        """The webhook counter of one (type, result)."""
        return self._child(self.webhook_events, type_, result)

    def share_outcome(self, outcome: str, line: str) -> Any:
        """The shares counter of one (outcome, line)."""
        return self._child(self.shares, outcome, line)

    def count_api_error(self, exc: LinqError) -> None:
        """One failed Linq request: its Linq code, else its HTTP status, else ``transport``."""
        if isinstance(exc, LinqTransportError):
            code = "transport"
        else:
            code = str(exc.code or exc.status or "unknown")
        self.api_errors.labels(code=code).inc()
