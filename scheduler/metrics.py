"""Prometheus metrics of one daemon. Each daemon owns a registry, so tests can run several.

Label values are bounded: ``line`` comes from the schedule and the ledger's lines, every other
label from a fixed set (outcomes, statuses, event types, Linq codes). The names here are the
contract of ``deploy/prometheus/alerts.yaml`` and ``deploy/grafana/``: rename one and both
follow (their tests fail otherwise).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)

from scheduler import __version__
from scheduler.errors import LinqError, LinqTransportError

# A `_created` series per counter doubles the series count and answers no question here.
disable_created_metrics()  # type: ignore[no-untyped-call]

PASS_FAILURE_REASONS = ("ledger", "token_rejected")

# The per-line gauges, by metric name: one state of a line per gauge, so that a new state
# (e.g. ``ineligible``) is one more gauge beside ``paused``, not a relabelling.
LINE_GAUGES = {
    "card_active": ("share_scheduler_card_active", "1 when the line's contact card is active."),
    "paused": ("share_scheduler_line_paused", "1 when an operator paused sharing on the line."),
    "ineligible": (
        "share_scheduler_line_ineligible",
        "1 while Linq refuses activity on the line (403/2027, or FLAGGED / CRITICAL): its"
        " chats wait for the line's probe or its ACTIVE report.",
    ),
    "due_now": (
        "share_scheduler_line_due_chats",
        "Chats of the line due now and not claimed (at the last gauge refresh).",
    ),
    "shared_today": (
        "share_scheduler_line_shared_today",
        "Chats of the line shared today (calendar day in the report zone; ambiguous included).",
    ),
    "chats": ("share_scheduler_line_chats", "Chats of the line in the ledger."),
}


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        ProcessCollector(registry=registry)
        self.build = Info("share_scheduler_build", "The running version.", registry=registry)
        self.build.info({"version": __version__})
        self.shares = Counter(
            "share_scheduler_shares",
            "Share claims finished, by outcome and line.",
            ["outcome", "line"],
            registry=registry,
        )
        self.share_latency = Histogram(
            "share_scheduler_share_call_seconds",
            "Latency of share_contact_card calls.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.api_errors = Counter(
            "share_scheduler_api_errors",
            "Failed Linq API requests (every try), by Linq code, else HTTP status, or transport.",
            ["code"],
            registry=registry,
        )
        self.pass_started = Gauge(
            "share_scheduler_pass_last_start_timestamp_seconds",
            "Start of the last share pass.",
            registry=registry,
        )
        self.pass_finished = Gauge(
            "share_scheduler_pass_last_end_timestamp_seconds",
            "End of the last share pass.",
            registry=registry,
        )
        self.pass_succeeded = Gauge(
            "share_scheduler_pass_last_success_timestamp_seconds",
            "End of the last share pass that completed against the ledger (claims taken and "
            "outcomes recorded); it stays put while the ledger is unavailable.",
            registry=registry,
        )
        self.pass_failures = Counter(
            "share_scheduler_pass_failures",
            "Share passes that did not complete, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in PASS_FAILURE_REASONS:
            self.pass_failures.labels(reason=reason)
        self.token_rejected = Gauge(
            "share_scheduler_token_rejected",
            "1 while Linq rejects the API token (401/403): nothing is shared.",
            registry=registry,
        )
        self.webhook_clock_skew = Gauge(
            "share_scheduler_webhook_clock_skew_seconds",
            "This host's clock minus the webhook signer's: the median over recent correctly "
            "signed deliveries (stale ones included).",
            registry=registry,
        )
        self.pass_duration = Gauge(
            "share_scheduler_pass_last_duration_seconds",
            "Duration of the last share pass.",
            registry=registry,
        )
        self.ambiguous_resolved = Counter(
            "share_scheduler_ambiguous_resolved",
            "Claims found without outcome, counted as shared.",
            registry=registry,
        )
        self.ambiguous_attempts = Counter(
            "share_scheduler_ambiguous_attempts",
            "Attempts ended ambiguous (a call cut short, or a claim found without outcome): "
            "counted as shared, the recipient may or may not have the card.",
            registry=registry,
        )
        self.webhook_events = Counter(
            "share_scheduler_webhook_events",
            "Webhook deliveries, by event type and result.",
            ["type", "result"],
            registry=registry,
        )
        self.webhook_signature_schemes = Counter(
            "share_scheduler_webhook_signature_scheme",
            "Webhook deliveries by the signature scheme checked: standard or legacy.",
            ["scheme"],
            registry=registry,
        )
        # Children of the counters hit per call or delivery, looked up once each: labels()
        # validates and takes a lock on every call.
        self._children: dict[tuple[object, ...], Any] = {}
        self.line: dict[str, Gauge] = {
            key: Gauge(name, doc, ["line"], registry=registry)
            for key, (name, doc) in LINE_GAUGES.items()
        }
        self.card_writes = Counter(
            "share_scheduler_card_writes",
            "Contact card writes (POST and PATCH), by line and result.",
            ["line", "result"],
            registry=registry,
        )
        self.card_activation_timeouts = Counter(
            "share_scheduler_card_activation_timeouts",
            "Card writes given up on because the card did not turn active in time.",
            ["line"],
            registry=registry,
        )
        self.recipients = Gauge(
            "share_scheduler_recipients",
            "Recipients held across every chat and line, by state (opted_out: 2024 until they"
            " write again; blocked: on our account's blocked list, 2026).",
            ["state"],
            registry=registry,
        )
        self.due_chats = Gauge(
            "share_scheduler_due_chats", "Chats due now (at the last pass).", registry=registry
        )
        self.chats_by_status = Gauge(
            "share_scheduler_chats",
            "Chats in the ledger, by status.",
            ["status"],
            registry=registry,
        )

    def set_line(self, line: str, **values: float) -> None:
        """Set the per-line gauges named in ``values`` (keys of ``LINE_GAUGES``) for ``line``."""
        for key, value in values.items():
            self.line[key].labels(line=line).set(value)

    def _child(self, metric: Counter, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def webhook_event(self, type_: str, result: str) -> Any:
        """The webhook counter of one (type, result)."""
        return self._child(self.webhook_events, type_, result)

    def webhook_signature(self, scheme: str) -> Any:
        """The signature scheme counter of one scheme (``standard`` or ``legacy``)."""
        return self._child(self.webhook_signature_schemes, scheme)

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
