"""A host clock off by more than the tolerance: every webhook 401s, and the skew shows."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from scheduler.http.app import create_app
from scheduler.http.runtime import Runtime
from scheduler.ingest.skew import WINDOW, SkewEstimate
from scheduler.ledger.engine import Ledger
from tests.factories import message_event
from tests.integration.test_webhook_app import SECRET, _runtime, _signed

SKEW = 600  # seconds the sender's clock is behind ours; the tolerance is 300


@pytest.fixture
async def rig(ledger: Ledger) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    runtime = _runtime(ledger, [SECRET])
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://daemon"
    ) as client:
        yield client, runtime


def _skew(runtime: Runtime) -> float | None:
    return runtime.metrics.registry.get_sample_value("share_scheduler_webhook_clock_skew_seconds")


async def _deliver(client: httpx.AsyncClient, n: int, offset: int, **kwargs: Any) -> set[int]:
    statuses = set()
    for i in range(n):
        payload = message_event(
            "message.sent",
            event_id=f"ev-{offset}-{i}-{kwargs.get('secret', '')}",
            sent_at=datetime.now(UTC) - timedelta(hours=1),
        )
        answer = await client.post(
            "/webhooks/linq", **_signed(payload, ts=int(time.time()) - offset, **kwargs)
        )
        statuses.add(answer.status_code)
    return statuses


async def test_stale_but_correctly_signed_deliveries_measure_the_skew(
    rig: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, runtime = rig
    with capture_logs() as logs:
        assert await _deliver(client, 5, SKEW) == {401}
        # Wrongly signed deliveries say nothing about the clock, whatever their timestamp.
        assert await _deliver(client, 5, 99_999, secret="not-the-secret") == {401}
    skew = _skew(runtime)
    print(f"measured skew: {skew}s")
    assert skew is not None and SKEW - 5 <= skew <= SKEW + 5
    logged = [e for e in logs if e["event"] == "webhook.clock_skew"]
    assert len(logged) == 1, logged
    assert SKEW - 5 <= logged[0]["offset_seconds"] <= SKEW + 5
    assert logged[0]["log_level"] == "warning"

    # The clock is fixed: once most recent deliveries agree, the skew is back to ~0, said once.
    with capture_logs() as logs:
        assert await _deliver(client, WINDOW, 0) == {200}
    skew = _skew(runtime)
    assert skew is not None and abs(skew) < 5
    assert [e["offset_seconds"] for e in logs if e["event"] == "webhook.clock_skew"] != []
    assert len([e for e in logs if e["event"] == "webhook.clock_skew"]) == 1


def test_the_estimate_is_a_median_and_is_reported_once_per_change() -> None:
    estimate = SkewEstimate()
    reports = []
    for offset in [0.2, 0.4, 400, 0.3]:  # one late delivery does not make a skew
        value = estimate.observe(1000.0, 1000.0 + offset)
        if estimate.changed(value):
            reports.append(value)
    assert reports == []
    for _ in range(10):
        value = estimate.observe(1000.0, 1400.0)
        if estimate.changed(value):
            reports.append(value)
    assert reports == [400.0]


async def test_doctor_reports_the_skew_the_running_daemon_measures(
    rig: tuple[httpx.AsyncClient, Runtime],
) -> None:
    import asyncio

    import uvicorn

    from scheduler.config import Schedule, WebhooksConfig
    from scheduler.demo.processes import free_port
    from scheduler.doctor import _check_webhook_clock, _Report

    client, runtime = rig
    await _deliver(client, 3, SKEW)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_config=None)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        report = _Report()
        schedule = Schedule(webhooks=WebhooksConfig(listen=f"0.0.0.0:{port}"))
        await _check_webhook_clock(report, schedule)
    finally:
        server.should_exit = True
        await task
    (check,) = report.checks
    print(check)
    assert (check.name, check.status) == ("webhook clock", "fail")
    assert "+600s" in check.detail or "+601s" in check.detail
    assert "fix NTP" in check.detail


def test_the_doctor_verdict_follows_the_tolerance() -> None:
    from scheduler.doctor import webhook_clock_verdict

    text = "# HELP x\nshare_scheduler_webhook_clock_skew_seconds {}\n"
    assert webhook_clock_verdict(text.format(-2.5), 300) == (
        "ok",
        "-2s between this host and the webhook signer (median of recent signed deliveries; "
        "tolerance 300s)",
    )
    assert webhook_clock_verdict(text.format(200), 300)[0] == "warn"  # type: ignore[index]
    assert webhook_clock_verdict(text.format(-301), 300)[0] == "fail"  # type: ignore[index]
    assert webhook_clock_verdict("nothing here", 300) is None
