"""The ledger's numbers that ``/metrics`` shows as gauges, as plain records.

The ledger counts (:mod:`scheduler.ledger.gauges`); whoever owns the metrics registry sets the
gauges from these (:mod:`scheduler.http.gauges`), so the ledger never touches Prometheus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scheduler.core.status import ChatStatus


@dataclass(frozen=True, slots=True)
class LineGauges:
    """One line's states and counts."""

    line: str
    card_active: bool
    paused: bool
    ineligible: bool
    due_now: int
    shared_today: int
    chats: int


@dataclass(frozen=True, slots=True)
class LedgerGauges:
    lines: tuple[LineGauges, ...]
    # Every status, those with no chat at 0: a status that empties must drop to 0 instead of
    # keeping its last value.
    chats_by_status: Mapping[ChatStatus, int]
    recipients_opted_out: int
    recipients_blocked: int
    due_now: int
