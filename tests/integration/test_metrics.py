"""``/metrics`` as Prometheus reads it: per-line gauges from a real ledger, and the registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scheduler import __version__
from scheduler.cards.status import set_line_paused
from scheduler.http.gauges import publish_ledger_gauges
from scheduler.ledger.engine import Ledger
from scheduler.ledger.gauges import read_ledger_gauges
from scheduler.metrics import LINE_GAUGES, Metrics
from tests.factories import add_chats, add_line, policy

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
L1 = "+14155550101"
L2 = "+14155550102"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


async def test_line_gauges_follow_the_ledger(ledger: Ledger) -> None:
    pol = policy()
    await add_line(ledger, L1, NOW)
    await add_line(ledger, L2, NOW, state="pending")
    await add_chats(ledger, L1, 3, now=NOW, first_outbound_at=NOW - timedelta(days=1), pol=pol)
    await add_chats(
        ledger, L2, 2, now=NOW, first_outbound_at=NOW - timedelta(days=1), prefix="b", pol=pol
    )
    metrics = Metrics()
    publish_ledger_gauges(metrics, await read_ledger_gauges(ledger, NOW, ZoneInfo("UTC")))

    assert value(metrics, "share_scheduler_card_active", line=L1) == 1
    assert value(metrics, "share_scheduler_card_active", line=L2) == 0
    assert value(metrics, "share_scheduler_line_paused", line=L1) == 0
    assert value(metrics, "share_scheduler_line_due_chats", line=L1) == 3
    # A line whose card is not active has nothing due.
    assert value(metrics, "share_scheduler_line_due_chats", line=L2) == 0
    assert value(metrics, "share_scheduler_line_chats", line=L2) == 2
    assert value(metrics, "share_scheduler_line_shared_today", line=L1) == 0
    assert value(metrics, "share_scheduler_chats", status="active") == 5
    assert value(metrics, "share_scheduler_chats", status="opted_out") == 0

    await set_line_paused(ledger, L1, True, NOW)
    publish_ledger_gauges(metrics, await read_ledger_gauges(ledger, NOW, ZoneInfo("UTC")))
    assert value(metrics, "share_scheduler_line_paused", line=L1) == 1
    assert value(metrics, "share_scheduler_line_due_chats", line=L1) == 0
    assert value(metrics, "share_scheduler_due_chats") == 0


def test_registry_has_build_and_process_series_and_no_created() -> None:
    metrics = Metrics()
    metrics.share_outcome("shared", L1).inc()
    found = samples(metrics)
    assert found[("share_scheduler_build_info", (("version", __version__),))] == 1
    assert any(name == "process_resident_memory_bytes" for name, _ in found)
    assert not [name for name, _ in found if name.endswith("_created")]
    # Pass failures are exported at 0 from the start, so rate() has a series to work on.
    assert found[("share_scheduler_pass_failures_total", (("reason", "ledger"),))] == 0


def test_line_gauges_are_one_metric_per_state() -> None:
    metrics = Metrics()
    metrics.set_line(L1, paused=1, ineligible=1)
    found = samples(metrics)
    for key, (name, _doc) in LINE_GAUGES.items():
        assert name.startswith("share_scheduler_"), key
    assert found[("share_scheduler_line_paused", (("line", L1),))] == 1
    assert found[("share_scheduler_line_ineligible", (("line", L1),))] == 1
