"""The ledger's numbers set on the gauges ``/metrics`` exports.

The ledger reads them (:func:`scheduler.ledger.gauges.read_ledger_gauges`); this side owns the
registry, so the ledger never imports the metrics.
"""

from __future__ import annotations

from scheduler.core.gauges import LedgerGauges
from scheduler.metrics import Metrics


def publish_ledger_gauges(metrics: Metrics, gauges: LedgerGauges) -> None:
    for line in gauges.lines:
        metrics.set_line(
            line.line,
            card_active=1 if line.card_active else 0,
            paused=1 if line.paused else 0,
            ineligible=1 if line.ineligible else 0,
            due_now=line.due_now,
            shared_today=line.shared_today,
            chats=line.chats,
        )
    for status, count in gauges.chats_by_status.items():
        metrics.chats_by_status.labels(status=status.value).set(count)
    metrics.recipients.labels(state="opted_out").set(gauges.recipients_opted_out)
    metrics.recipients.labels(state="blocked").set(gauges.recipients_blocked)
    metrics.due_chats.set(gauges.due_now)
