"""``share-scheduler webhooks list|ensure`` as real commands against the simulator over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scheduler.ingest.subscriptions import DAEMON_EVENTS
from scheduler.testing import SimHandle
from tests.integration import test_card_cli as card_cli

LINE = "+14155550100"
OTHER = "+14155550111"
URL = "https://scheduler.example.com/webhooks/linq"


@pytest.fixture
def api(sim: SimHandle) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {sim.token}"}
    with httpx.Client(base_url=sim.api_base, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def config(tmp_path: Path, sim: SimHandle, api: httpx.Client) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "linq": {"base_url": sim.api_base, "timeout": "5s"},
                "database": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
                "webhooks": {"secret_envs": ["LINQ_WEBHOOK_SECRET", "LINQ_WEBHOOK_SECRET_NEXT"]},
                "lines": [{"number": OTHER}, {"number": LINE}],
            }
        )
    )
    return path


def _cli(*args: str, sim: SimHandle, token: bool = True) -> subprocess.CompletedProcess[str]:
    return card_cli._cli(*args, sim=sim, token=token)


def _subscriptions(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get("/v3/webhook-subscriptions")
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["subscriptions"]
    return items


def test_ensure_creates_once_prints_the_secret_once_and_is_idempotent(
    config: Path, sim: SimHandle, api: httpx.Client
) -> None:
    first = _cli("webhooks", "ensure", "--url", URL, "--config", str(config), sim=sim)
    assert first.returncode == 0, first.stderr
    [sub] = _subscriptions(api)
    assert sub["target_url"] == URL and sub["is_active"] is True
    assert sorted(sub["subscribed_events"]) == sorted(DAEMON_EVENTS)
    assert sorted(sub["phone_numbers"]) == [LINE, OTHER]
    secrets = [w for w in first.stdout.split() if w.startswith("whsec_")]
    assert len(secrets) == 1
    assert f"created webhook subscription {sub['id']}" in first.stdout
    # How to store it: the variable the schedule names.
    assert "LINQ_WEBHOOK_SECRET" in first.stdout
    assert secrets[0] not in first.stderr

    again = _cli("webhooks", "ensure", "--url", URL, "--config", str(config), sim=sim)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout
    assert "whsec_" not in again.stdout + again.stderr
    assert _subscriptions(api) == [sub]  # not even updated_at moved

    listed = _cli("webhooks", "list", "--config", str(config), "--json", sim=sim)
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert [(s["id"], s["target_url"]) for s in shown] == [(sub["id"], URL)]
    assert "whsec_" not in listed.stdout
    # The ledger is never told the secret: the command does not even open it.
    assert not (config.parent / "ledger.db").exists()


def test_ensure_repairs_a_drifted_subscription_without_a_new_secret(
    config: Path, sim: SimHandle, api: httpx.Client
) -> None:
    created = api.post(
        "/v3/webhook-subscriptions",
        json={"target_url": URL, "subscribed_events": ["message.sent", "reaction.added"]},
    ).json()
    api.put(f"/v3/webhook-subscriptions/{created['id']}", json={"is_active": False})
    api.post(
        "/v3/webhook-subscriptions",
        json={"target_url": "https://other.example/hook", "subscribed_events": ["poll.sent"]},
    )
    result = _cli("webhooks", "ensure", "--url", URL, "--config", str(config), "--json", sim=sim)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["action"] == "update"
    assert out["changes"] == ["subscribed_events", "phone_numbers", "is_active"]
    assert "signing_secret" not in out and "whsec_" not in result.stdout
    subs = {s["target_url"]: s for s in _subscriptions(api)}
    assert subs[URL]["id"] == created["id"]
    assert sorted(subs[URL]["subscribed_events"]) == sorted(DAEMON_EVENTS)
    assert subs[URL]["is_active"] is True
    # Another URL's subscription is left alone.
    assert subs["https://other.example/hook"]["subscribed_events"] == ["poll.sent"]
    again = _cli("webhooks", "ensure", "--url", URL, "--config", str(config), "--json", sim=sim)
    assert json.loads(again.stdout)["action"] == "unchanged"


def test_ensure_json_shows_the_secret_on_creation_only(
    config: Path, sim: SimHandle, api: httpx.Client
) -> None:
    args = ("webhooks", "ensure", "--url", URL, "--config", str(config), "--json")
    first = json.loads(_cli(*args, sim=sim).stdout)
    assert first["action"] == "create"
    assert first["signing_secret"].startswith("whsec_")
    assert "LINQ_WEBHOOK_SECRET" in first["store_secret"]
    second = json.loads(_cli(*args, sim=sim).stdout)
    assert second["action"] == "unchanged" and "signing_secret" not in second


@pytest.mark.parametrize(
    "url", ["http://scheduler.example.com/hook", "scheduler.example.com", "https://u:p@h.example/"]
)
def test_ensure_refuses_a_url_that_is_not_https(
    config: Path, sim: SimHandle, api: httpx.Client, url: str
) -> None:
    result = _cli("webhooks", "ensure", "--url", url, "--config", str(config), sim=sim)
    assert result.returncode == 2
    assert "--url" in result.stderr
    assert _subscriptions(api) == []


def test_without_a_token_the_commands_fail_in_one_line(
    config: Path, sim: SimHandle, api: httpx.Client
) -> None:
    result = _cli("webhooks", "ensure", "--url", URL, "--config", str(config), sim=sim, token=False)
    assert result.returncode != 0
    assert "LINQ_API_KEY" in result.stderr
    assert _subscriptions(api) == []


def _error(response: httpx.Response) -> tuple[int, int]:
    body = response.json()
    assert body["success"] is False and body["error"]["message"]
    return response.status_code, body["error"]["code"]


def test_the_simulator_refuses_bad_subscriptions_with_linq_errors(api: httpx.Client) -> None:
    post = "/v3/webhook-subscriptions"
    events = ["message.sent"]
    assert _error(api.post(post, json={"subscribed_events": events})) == (400, 1003)
    insecure = {"target_url": "http://x.example/", "subscribed_events": events}
    assert _error(api.post(post, json=insecure)) == (400, 1001)
    bad_type = {"target_url": URL, "subscribed_events": ["sent"]}
    assert _error(api.post(post, json=bad_type)) == (400, 1001)
    bad_line = {"target_url": URL, "subscribed_events": events, "phone_numbers": ["555"]}
    assert _error(api.post(post, json=bad_line)) == (400, 1002)
    assert _subscriptions(api) == []
    first = api.post(post, json={"target_url": URL, "subscribed_events": events})
    assert first.status_code == 200
    assert _error(api.post(post, json={"target_url": URL, "subscribed_events": events})) == (
        409,
        1001,
    )
    assert _error(api.get(f"{post}/missing")) == (404, 1001)
    assert _error(api.put(f"{post}/{first.json()['id']}", json={"is_active": "yes"})) == (400, 1001)
    assert api.delete(f"{post}/{first.json()['id']}").status_code == 204
    assert _error(api.delete(f"{post}/{first.json()['id']}")) == (404, 1001)


def test_a_refused_token_is_one_line_and_exit_1(config: Path, api: httpx.Client) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "LINQ_"))}
    env.pop("SHARE_SCHEDULER_CLOCK_FILE", None)
    env["LINQ_API_KEY"] = "not-the-token"
    result = subprocess.run(
        [sys.executable, "-m", "scheduler", "webhooks", "list", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "2004" in result.stderr and "not-the-token" not in result.stderr
