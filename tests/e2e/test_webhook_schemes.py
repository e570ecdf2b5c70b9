"""Standard Webhooks, legacy headers and a secret rotation, against a real daemon process.

The test signs deliveries itself, as Linq would, and posts them to the daemon over loopback
HTTP; the simulator serves the API. Time is the shared clock file, read by this process too.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler import clock
from scheduler.clock import CLOCK_FILE_ENV
from scheduler.demo.processes import DaemonProcess, free_port, write_schedule
from scheduler.testing import event_body, legacy_headers, message_event, standard_headers
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, ledger_chats, wait_for

pytestmark = pytest.mark.e2e
LINE = "+14155550100"
ALICE = "+12125550199"
OLD = "whsec_" + base64.b64encode(b"e2e-old-signing-key-000000001").decode()
NEW = "whsec_" + base64.b64encode(b"e2e-new-signing-key-000000002").decode()
CLI = (sys.executable, "-m", "scheduler")
FOREIGN = "whsec_" + base64.b64encode(b"e2e-someone-elses-key-0000003").decode()


def message_sent(event_id: str, chat_id: str, *, service: str = "iMessage") -> bytes:
    event = message_event(
        "message.sent", event_id=event_id, chat_id=chat_id, line=LINE, service=service
    )
    return event_body(event)


def post(daemon: DaemonProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{daemon.base_url}/webhooks/linq", content=body, headers=headers, timeout=10)


def events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    found = []
    for line in daemon.logs().splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            record = json.loads(line)
            if record.get("event") == name:
                found.append(record)
    return found


def scheme_counts(daemon: DaemonProcess) -> dict[str, float]:
    text = httpx.get(f"{daemon.base_url}/metrics", timeout=10).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("share_scheduler_webhook_signature_scheme_total{"):
            scheme = line.split('scheme="', 1)[1].split('"', 1)[0]
            counts[scheme] = float(line.rsplit(" ", 1)[1])
    return counts


def reload_with_secrets(stack: Stack, daemon: DaemonProcess, files: list[Path]) -> None:
    before = len(events(daemon, "config.reloaded"))
    schedule = stack.schedule(
        daemon.port,
        {"webhooks": {"secret_envs": [], "secret_files": [str(f) for f in files]}},
        "d0",
    )
    write_schedule(daemon.config_path, schedule)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: len(events(daemon, "config.reloaded")) > before, what="config.reloaded")


def test_standard_legacy_and_a_rotation_are_accepted_and_forgeries_write_nothing(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CLOCK_FILE_ENV, str(stack.clock_file))
    old_file, new_file = tmp_path / "old.secret", tmp_path / "new.secret"
    old_file.write_text(OLD + "\n")
    new_file.write_text(NEW + "\n")
    stack.start_sim(None)
    daemon = stack.add_daemon(
        {"webhooks": {"secret_envs": [], "secret_files": [str(old_file)]}}, port=free_port()
    )
    daemon.start()

    # Standard Webhooks only, then legacy headers only: both verified with the one secret.
    body = message_sent("ev-standard", "chat-standard")
    first = post(daemon, body, standard_headers(body, OLD))
    assert first.json() == {"ok": True, "result": "applied"}
    legacy = message_sent("ev-legacy", "chat-legacy")
    assert post(daemon, legacy, legacy_headers(legacy, OLD)).json()["result"] == "applied"

    # Linq starts signing with a new secret before the daemon knows it: refused, retried later.
    early = message_sent("ev-rotated", "chat-rotated")
    assert post(daemon, early, standard_headers(early, NEW)).status_code == 401

    # During the switch both secrets are configured: Linq's two entries, or the new one alone.
    reload_with_secrets(stack, daemon, [old_file, new_file])
    assert post(daemon, early, standard_headers(early, NEW)).json()["result"] == "applied"
    both = message_sent("ev-both", "chat-both")
    assert post(daemon, both, standard_headers(both, OLD, NEW)).json()["result"] == "applied"
    old_legacy = message_sent("ev-old-legacy", "chat-old-legacy")
    assert post(daemon, old_legacy, legacy_headers(old_legacy, OLD)).status_code == 200

    # Forgeries and replays, each with an event the ledger must never see.
    wrong = message_sent("ev-wrong", "chat-wrong")
    assert post(daemon, wrong, standard_headers(wrong, FOREIGN)).status_code == 401
    stale = message_sent("ev-stale", "chat-stale")
    ten_minutes_ago = (clock.now() - timedelta(minutes=10)).timestamp()
    assert (
        post(daemon, stale, standard_headers(stale, NEW, timestamp=ten_minutes_ago)).status_code
        == 401
    )
    tampered_headers = standard_headers(wrong, NEW)
    tampered = wrong.replace(b"chat-wrong", b"chat-tampered")
    assert post(daemon, tampered, tampered_headers).status_code == 401
    before = {c["chat_id"]: c for c in ledger_chats(daemon)}
    time.sleep(1.1)  # a retry is signed again, with a later timestamp
    replay = post(daemon, body, standard_headers(body, NEW))
    assert replay.json() == {"ok": True, "result": "duplicate"}

    # After the switch, the old secret is retired.
    reload_with_secrets(stack, daemon, [new_file])
    retired = message_sent("ev-retired", "chat-retired")
    assert post(daemon, retired, standard_headers(retired, OLD)).status_code == 401

    chats = {c["chat_id"]: c for c in ledger_chats(daemon)}
    assert set(chats) == {
        "chat-standard",
        "chat-legacy",
        "chat-rotated",
        "chat-both",
        "chat-old-legacy",
    }
    assert chats["chat-standard"] == before["chat-standard"]  # the replay changed nothing
    counts = scheme_counts(daemon)
    assert counts["legacy"] == 2
    assert counts["standard"] == 9
    rejected = events(daemon, "webhook.rejected")
    assert {r["reason"] for r in rejected} == {"signature_mismatch", "signature_stale"}
    for secret in (OLD, NEW):
        assert secret not in daemon.logs()
        assert secret[len("whsec_") :] not in daemon.logs()


def test_an_sms_downgraded_message_leaves_the_chat_sharing_that_day(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CLOCK_FILE_ENV, str(stack.clock_file))
    stack.env["LINQ_WEBHOOK_SECRET"] = NEW
    port = free_port()
    sim = stack.start_sim(port, activation_delay=0.5)
    # The simulator signs like Linq: Standard Webhooks with the whsec_ secret, and legacy.
    sim.control("POST", "webhooks", json={"enabled": True, "secret": NEW})
    daemon = stack.add_daemon({"lines": [{"number": LINE}]}, port=port)
    daemon.start()
    stack.set_time(DAY1_0800_NY + timedelta(hours=2))  # 10:00 in New York, inside the window
    chat_id = stack.create_chat(LINE, [ALICE], service="iMessage")
    stack.drain_webhooks()
    wait_for(lambda: any(c["chat_id"] == chat_id for c in ledger_chats(daemon)), what="the chat")

    # Apple downgrades one message of the iMessage chat to SMS; Linq reports it as such.
    downgraded = message_sent("ev-downgraded", chat_id, service="SMS")
    reply = post(daemon, downgraded, standard_headers(downgraded, NEW))
    assert reply.json() == {"ok": True, "result": "applied"}
    [chat] = [c for c in ledger_chats(daemon) if c["chat_id"] == chat_id]
    assert chat["service"] == "iMessage"

    stack.create_card(LINE)
    wait_for(
        lambda: any(s["chat_id"] == chat_id for s in stack.shares()),
        timeout=60,
        what="the chat's share",
    )
    assert [s["service"] for s in stack.shares() if s["chat_id"] == chat_id] == ["iMessage"]
    assert scheme_counts(daemon).get("standard", 0) >= 3


def webhooks_ensure(daemon: DaemonProcess, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "webhooks", "ensure", "--url", url, "--config", str(daemon.config_path), "--json"],
        capture_output=True,
        text=True,
        env=daemon.env,
        timeout=60,
    )


def test_the_secret_webhooks_ensure_prints_is_the_one_the_daemon_verifies(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CLOCK_FILE_ENV, str(stack.clock_file))
    port = free_port()
    sim = stack.start_sim(port, activation_delay=0.5)
    stack.env.pop("LINQ_WEBHOOK_SECRET")
    daemon = stack.add_daemon({"lines": [{"number": LINE}]}, port=port)
    url = "https://scheduler.example.com/webhooks/linq"
    ensure = webhooks_ensure(daemon, url)
    assert ensure.returncode == 0, ensure.stderr
    created = json.loads(ensure.stdout)
    secret = created["signing_secret"]
    assert created["subscription"]["phone_numbers"] == [LINE]
    # Linq delivers to the subscription with its secret; the simulator is told the same.
    sim.control("POST", "webhooks", json={"enabled": True, "secret": secret})
    stack.env["LINQ_WEBHOOK_SECRET"] = secret  # stored where the schedule reads it
    daemon.env = stack.env
    daemon.start()
    stack.set_time(DAY1_0800_NY + timedelta(hours=2))
    stack.create_card(LINE)
    chat_id = stack.create_chat(LINE, [ALICE])
    wait_for(
        lambda: any(s["chat_id"] == chat_id for s in stack.shares()),
        timeout=60,
        what="the chat's share",
    )
    assert scheme_counts(daemon).get("standard", 0) >= 3
    assert "signature" not in " ".join(r["reason"] for r in events(daemon, "webhook.rejected"))
    assert secret not in daemon.logs()
    again = webhooks_ensure(daemon, url)
    assert json.loads(again.stdout)["action"] == "unchanged"
    assert "whsec_" not in again.stdout
