"""Standard Webhooks and legacy signatures at the webhook endpoint, against a real ledger."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from scheduler.config import load_schedule
from scheduler.errors import ConfigError
from scheduler.http.app import create_app
from scheduler.ingest.signing import standard_webhook
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats
from scheduler.ledger.models import webhook_events_table
from scheduler.metrics import Metrics
from scheduler.testing import legacy_headers, standard_delivery
from tests.factories import message_event
from tests.integration.test_webhook_app import _runtime

NEW = "whsec_" + base64.b64encode(b"new-signing-key-0123456789ab").decode()
OLD = "whsec_" + base64.b64encode(b"old-signing-key-0123456789ab").decode()
UNKNOWN = "whsec_" + base64.b64encode(b"someone-elses-key-0123456789").decode()


@pytest.fixture
async def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(ledger: Ledger, metrics: Metrics) -> AsyncIterator[httpx.AsyncClient]:
    runtime = _runtime(ledger, [NEW, OLD])
    runtime.metrics = metrics
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://daemon"
    ) as c:
        yield c


def standard(
    payload: dict[str, Any],
    *secrets: str,
    ts: int | None = None,
    webhook_id: str | None = None,
) -> dict[str, Any]:
    return standard_delivery(payload, *(secrets or (NEW,)), webhook_id=webhook_id, timestamp=ts)


async def _counts(ledger: Ledger) -> tuple[int, int]:
    async with ledger.read() as conn:
        n_chats = (await conn.execute(sa.select(sa.func.count()).select_from(chats))).scalar_one()
        n_events = (
            await conn.execute(sa.select(sa.func.count()).select_from(webhook_events_table))
        ).scalar_one()
    return int(n_chats), int(n_events)


def _scheme_count(metrics: Metrics, scheme: str) -> float:
    value = metrics.registry.get_sample_value(
        "share_scheduler_webhook_signature_scheme_total", {"scheme": scheme}
    )
    return value or 0.0


async def test_standard_webhook_is_applied_once_and_counted(
    client: httpx.AsyncClient, ledger: Ledger, metrics: Metrics
) -> None:
    payload = message_event("message.sent", event_id="ev-std")
    first = await client.post("/webhooks/linq", **standard(payload))
    again = await client.post("/webhooks/linq", **standard(payload))
    assert first.json() == {"ok": True, "result": "applied"}
    assert again.json() == {"ok": True, "result": "duplicate"}
    assert await _counts(ledger) == (1, 1)
    assert _scheme_count(metrics, "standard") == 2
    assert _scheme_count(metrics, "legacy") == 0


async def test_any_one_valid_entry_of_several_is_enough(client: httpx.AsyncClient) -> None:
    # During a rotation Linq sends one entry per secret; ours knows only one of them.
    payload = message_event("message.sent", event_id="ev-multi")
    resp = await client.post("/webhooks/linq", **standard(payload, UNKNOWN, OLD))
    assert resp.status_code == 200


async def test_standard_is_preferred_when_both_schemes_are_present(
    client: httpx.AsyncClient, ledger: Ledger, metrics: Metrics
) -> None:
    payload = message_event("message.sent", event_id="ev-both")
    good_standard = standard(payload, UNKNOWN)  # a Standard signature we cannot verify
    good_standard["headers"].update(legacy_headers(good_standard["content"], NEW))
    resp = await client.post("/webhooks/linq", **good_standard)
    # The valid legacy signature does not rescue a wrong Standard one.
    assert resp.status_code == 401
    assert await _counts(ledger) == (0, 0)
    kwargs = standard(payload)
    kwargs["headers"].update(legacy_headers(kwargs["content"], UNKNOWN))
    assert (await client.post("/webhooks/linq", **kwargs)).status_code == 200
    assert _scheme_count(metrics, "legacy") == 0


async def test_legacy_headers_with_a_whsec_secret_are_accepted(
    client: httpx.AsyncClient, metrics: Metrics
) -> None:
    payload = message_event("message.sent", event_id="ev-legacy")
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **legacy_headers(body, OLD)}
    resp = await client.post("/webhooks/linq", content=body, headers=headers)
    assert resp.status_code == 200
    assert _scheme_count(metrics, "legacy") == 1


@pytest.mark.parametrize("fault", ["wrong_key", "stale", "future", "tampered", "bad_entry"])
async def test_bad_standard_signatures_are_401_and_write_nothing(
    client: httpx.AsyncClient, ledger: Ledger, fault: str
) -> None:
    payload = message_event("message.sent", event_id=f"ev-{fault}")
    now = int(time.time())
    ts = {"stale": now - 301 - 60, "future": now + 3600}.get(fault)
    kwargs = standard(payload, UNKNOWN if fault == "wrong_key" else NEW, ts=ts)
    if fault == "tampered":
        kwargs["content"] = kwargs["content"].replace(b"chat-1", b"chat-2")
    if fault == "bad_entry":
        kwargs["headers"]["webhook-signature"] = "v1,not*base64 v2,abc ,"
    resp = await client.post("/webhooks/linq", **kwargs)
    assert resp.status_code == 401
    assert resp.json()["ok"] is False
    assert await _counts(ledger) == (0, 0)


async def test_webhook_id_must_be_the_event_id(client: httpx.AsyncClient, ledger: Ledger) -> None:
    payload = message_event("message.sent", event_id="ev-real")
    resp = await client.post("/webhooks/linq", **standard(payload, webhook_id="ev-other"))
    assert resp.status_code == 400
    assert "webhook-id" in resp.json()["error"]
    assert await _counts(ledger) == (0, 0)


async def test_a_replayed_webhook_id_changes_nothing(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    payload = message_event("message.sent", event_id="ev-replay")
    assert (await client.post("/webhooks/linq", **standard(payload))).status_code == 200
    async with ledger.read() as conn:
        before = (await conn.execute(sa.select(chats))).one()
    # The same delivery, signed again later (as a retry is): recorded once.
    time.sleep(1.1)
    again = await client.post("/webhooks/linq", **standard(payload))
    assert again.json()["result"] == "duplicate"
    async with ledger.read() as conn:
        after = (await conn.execute(sa.select(chats))).one()
    assert after == before
    assert await _counts(ledger) == (1, 1)


def test_a_bad_whsec_secret_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="not base64"):
        standard_webhook("whsec_***")
    with pytest.raises(ValueError, match="empty"):
        standard_webhook("whsec_")


def test_config_names_a_malformed_whsec_secret_and_keeps_it_out_of_the_message(
    tmp_path: Path,
) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text("webhooks:\n  secret_envs: [LINQ_WEBHOOK_SECRET, LINQ_WEBHOOK_SECRET_NEXT]\n")
    env = {
        "LINQ_API_KEY": "tok-123456",
        "LINQ_WEBHOOK_SECRET": OLD,
        "LINQ_WEBHOOK_SECRET_NEXT": "whsec_secret*value",
    }
    with pytest.raises(ConfigError) as info:
        load_schedule(path, env=env)
    [problem] = info.value.problems
    assert problem.path == "webhooks.secret_envs.1"
    assert "$LINQ_WEBHOOK_SECRET_NEXT is not a signing secret" in str(problem)
    assert "not base64" in str(problem)
    assert "secret*value" not in str(info.value)
    _, secrets = load_schedule(path, env={**env, "LINQ_WEBHOOK_SECRET_NEXT": NEW})
    assert [s.reveal() for s in secrets.webhook_secrets] == [OLD, NEW]
    # From a file, the same check, named by the file's place in the schedule.
    secret_file = tmp_path / "next.secret"
    secret_file.write_text("whsec_\n")
    path.write_text(f"webhooks:\n  secret_files: [{secret_file}]\n")
    with pytest.raises(ConfigError) as info:
        load_schedule(path, env={"LINQ_API_KEY": "tok-123456"})
    [problem] = info.value.problems
    assert problem.path == "webhooks.secret_files.0"
    assert "empty" in str(problem)
