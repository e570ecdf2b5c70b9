"""The simulator over real loopback HTTP, checked against the shapes and codes of linq-api.md."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from scheduler import clock
from scheduler.cli.sim_cmd import sim_app
from scheduler.ingest.signing import SignatureVerdict, verify
from scheduler.sim.settings import SimSettings
from scheduler.testing import SimControl, SimHandle

LINE = "+14155550100"
OTHER_LINE = "+14155550111"
ALICE = "+14155550199"
BOB = "+14155550198"
SECRET = "whsec-test"


class Receiver:
    """A webhook endpoint that records every delivery and answers from a script of statuses."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.deliveries.append((dict(self.headers.items()), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/linq"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for _, body in self.deliveries]


@pytest.fixture(scope="module")
def sim_settings() -> SimSettings:
    return SimSettings(activation_delay=5, seed=11, webhook_secret=SECRET)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


@pytest.fixture
def control(sim_server: SimHandle) -> Iterator[SimControl]:
    with sim_server.control() as ctl:
        ctl.reset()
        ctl.faults(**SimSettings().knobs())
        ctl.webhooks(enabled=False)
        yield ctl


@pytest.fixture
def api(sim_server: SimHandle, control: SimControl) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {sim_server.token}"}
    with httpx.Client(base_url=sim_server.api_base, headers=headers, timeout=10) as client:
        yield client


def advance(clock_file: Path, seconds: float) -> None:
    clock.set_clock_file(clock_file, clock.now() + timedelta(seconds=seconds))


def error_of(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["status"] == status
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert body["trace_id"] == response.headers["X-Trace-Id"]
    error: dict[str, Any] = body["error"]
    return error


def new_chat(api: httpx.Client, to: str = ALICE, service: str = "iMessage") -> str:
    body = {
        "from": LINE,
        "to": [to],
        "message": {"parts": [{"type": "text", "value": "Your order shipped"}]},
        "service": service,
    }
    response = api.post("/v3/chats", json=body)
    assert response.status_code == 200, response.text
    chat_id: str = response.json()["chat"]["id"]
    return chat_id


def active_card(api: httpx.Client, clock_file: Path, number: str = LINE) -> None:
    created = api.post("/v3/contact_card", json={"phone_number": number, "first_name": "Acme"})
    assert created.status_code == 200, created.text
    advance(clock_file, 5)


def share(api: httpx.Client, chat_id: str) -> httpx.Response:
    return api.post(f"/v3/chats/{chat_id}/share_contact_card")


# -- auth and envelope ---------------------------------------------------------------------


def test_every_v3_call_needs_the_bearer_token(sim_server: SimHandle, control: SimControl) -> None:
    base = sim_server.api_base
    calls = [
        ("GET", "/v3/chats"),
        ("GET", "/v3/contact_card"),
        ("POST", "/v3/contact_card"),
        ("POST", "/v3/chats/some-chat/share_contact_card"),
    ]
    for method, path in calls:
        bare = httpx.request(method, base + path)
        error_of(bare, 401, 2004)
        wrong = httpx.request(method, base + path, headers={"Authorization": "Bearer nope"})
        error_of(wrong, 401, 2004)
    assert httpx.get(sim_server.base_url + "/_sim/health").json() == {"ok": True}
    assert [c["status"] for c in control.calls()] == [401, 401]


def test_unknown_endpoints_and_bad_json_use_the_envelope(api: httpx.Client) -> None:
    error_of(api.get("/v3/nothing-here"), 404, 1001)
    bad = api.post(
        "/v3/contact_card", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    error_of(bad, 400, 1001)


# -- cards ---------------------------------------------------------------------------------


def test_card_activates_after_the_delay_on_the_shared_clock(
    api: httpx.Client, clock_file: Path
) -> None:
    created = api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "Acme"})
    assert created.status_code == 200
    assert created.json() == {
        "phone_number": LINE,
        "first_name": "Acme",
        "last_name": None,
        "image_url": None,
        "is_active": False,
    }
    assert created.headers["X-Trace-Id"]
    one = {"phone_number": LINE}
    # GET retrieves the active cards: a pending card is not found (2012) nor listed.
    error_of(api.get("/v3/contact_card", params=one), 404, 2012)
    assert api.get("/v3/contact_card").json()["contact_cards"] == []
    error_of(api.patch("/v3/contact_card", params=one, json={"first_name": "B"}), 404, 2012)
    pending = api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "Acme"})
    assert pending.status_code == 200  # POST on a pending card: setup continues
    advance(clock_file, 5)
    assert api.get("/v3/contact_card", params=one).json()["contact_cards"][0]["is_active"] is True
    advance(clock_file, 3 * 86400)
    assert api.get("/v3/contact_card").json()["contact_cards"][0]["is_active"] is True

    again = api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "Other"})
    error_of(again, 409, 2014)
    patched = api.patch("/v3/contact_card", params=one, json={"image_url": "https://x/y.png"})
    assert patched.status_code == 200
    assert patched.json()["first_name"] == "Acme"
    assert patched.json()["image_url"] == "https://x/y.png"
    assert patched.json()["is_active"] is False


def test_card_errors(api: httpx.Client) -> None:
    error_of(api.get("/v3/contact_card", params={"phone_number": LINE}), 404, 2012)
    error_of(api.patch("/v3/contact_card", params={"phone_number": LINE}, json={}), 404, 2012)
    error_of(api.post("/v3/contact_card", json={"phone_number": "555-0100"}), 400, 1002)
    error_of(api.post("/v3/contact_card", json={"phone_number": LINE}), 400, 1003)


def test_card_writes_share_a_budget_of_three_per_ten_minutes(
    api: httpx.Client, clock_file: Path
) -> None:
    api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "A"})
    advance(clock_file, 60)
    for name in ("B", "C"):
        ok = api.patch("/v3/contact_card", params={"phone_number": LINE}, json={"first_name": name})
        assert ok.status_code == 200
        advance(clock_file, 5)  # a PATCHed card is active again once the change is applied
    limited = api.patch("/v3/contact_card", params={"phone_number": LINE}, json={"last_name": "Z"})
    error = error_of(limited, 429, 1007)
    assert 525 <= error["retry_after"] <= 530
    assert limited.headers["Retry-After"] == str(error["retry_after"])
    advance(clock_file, error["retry_after"])
    again = api.patch("/v3/contact_card", params={"phone_number": LINE}, json={"last_name": "Z"})
    assert again.status_code == 200
    assert again.json()["last_name"] == "Z"


def test_card_fault_knobs(api: httpx.Client, control: SimControl, clock_file: Path) -> None:
    control.faults(card_2022_next=1, card_4004_next=1)
    throttled = api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "A"})
    error_of(throttled, 503, 4004)
    advance(clock_file, 600)
    # Left not active: missing from GET, and only a POST sets it up again.
    error_of(api.get("/v3/contact_card", params={"phone_number": LINE}), 404, 2012)
    failed = api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "B"})
    error_of(failed, 500, 2022)
    assert control.state()["knobs"]["card_2022_next"] == 0
    ok = api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "B"})
    assert ok.json()["first_name"] == "B"


def test_numbers_outside_the_account_get_2005(api: httpx.Client, control: SimControl) -> None:
    control.faults(lines=[LINE])
    denied = api.post("/v3/contact_card", json={"phone_number": OTHER_LINE, "first_name": "A"})
    error_of(denied, 403, 2005)
    error_of(api.get("/v3/chats", params={"from": OTHER_LINE}), 403, 2005)
    assert api.get("/v3/chats", params={"from": LINE}).status_code == 200


# -- chats and messages --------------------------------------------------------------------


def test_chat_and_message_shapes(api: httpx.Client) -> None:
    body = {
        "from": LINE,
        "to": [ALICE, BOB],
        "message": {"parts": [{"type": "text", "value": "Welcome"}]},
    }
    created = api.post("/v3/chats", json=body)
    assert created.status_code == 200
    chat = created.json()["chat"]
    assert set(chat) >= {"id", "is_group", "service", "handles", "health_status", "message"}
    assert chat["is_group"] is True
    assert chat["service"] == "iMessage"
    assert chat["health_status"]["status"] == "HEALTHY"
    me = [h for h in chat["handles"] if h["is_me"]]
    assert [h["handle"] for h in me] == [LINE]
    assert set(me[0]) >= {"id", "handle", "service", "is_me", "joined_at", "left_at", "status"}
    message = chat["message"]
    assert message["from_handle"]["is_me"] is True
    assert set(message) >= {"id", "sent_at", "created_at", "delivery_status", "is_read", "parts"}

    sent = api.post(
        f"/v3/chats/{chat['id']}/messages",
        json={"message": {"parts": [{"type": "text", "value": "Still there?"}]}},
    )
    assert sent.status_code == 200
    assert sent.json()["chat_id"] == chat["id"]
    assert sent.json()["message"]["parts"] == [{"type": "text", "value": "Still there?"}]
    listed = api.get(f"/v3/chats/{chat['id']}/messages").json()
    assert [m["id"] for m in listed["messages"]] == [message["id"], sent.json()["message"]["id"]]
    assert listed["messages"][0]["is_from_me"] is True
    assert listed["messages"][0]["chat_id"] == chat["id"]
    assert listed["next_cursor"] is None
    error_of(api.get("/v3/chats/missing/messages"), 404, 2001)


def test_chats_and_messages_page_with_next_cursor(api: httpx.Client, control: SimControl) -> None:
    seeded = control.seed(LINE, 45)
    control.seed(OTHER_LINE, 3)
    seen: list[str] = []
    sizes = []
    cursor: str | None = None
    while True:
        params = {"from": LINE, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v3/chats", params=params).json()
        seen += [c["id"] for c in page["chats"]]
        sizes.append(len(page["chats"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [20, 20, 5]
    assert seen == seeded
    everything = api.get("/v3/chats", params={"limit": 100}).json()
    assert len(everything["chats"]) == 48
    assert everything["next_cursor"] is None
    error_of(api.get("/v3/chats", params={"limit": 101}), 400, 1001)
    error_of(api.get("/v3/chats", params={"cursor": "bogus"}), 400, 1001)

    chat_id = seeded[0]
    for n in range(3):
        control.send(chat_id, f"message {n}")
    first = api.get(f"/v3/chats/{chat_id}/messages", params={"limit": 2}).json()
    assert len(first["messages"]) == 2
    rest = api.get(
        f"/v3/chats/{chat_id}/messages", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [m["parts"][0]["value"] for m in rest["messages"]] == ["message 1", "message 2"]
    assert rest["next_cursor"] is None


# -- sharing -------------------------------------------------------------------------------


def test_share_rules_and_the_five_minute_limit(
    api: httpx.Client, control: SimControl, clock_file: Path
) -> None:
    chat_id = new_chat(api)
    error_of(share(api, "no-such-chat"), 404, 2001)
    error_of(share(api, chat_id), 404, 2012)
    api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "Acme"})
    error_of(share(api, chat_id), 404, 2012)
    advance(clock_file, 5)
    done = share(api, chat_id)
    assert done.status_code == 200
    assert done.content == b""
    [recorded] = control.shares(chat_id)
    assert recorded["from"] == LINE
    assert recorded["at"].endswith("Z")

    advance(clock_file, 60)
    error = error_of(limited := share(api, chat_id), 429, 1007)
    assert 239 <= error["retry_after"] <= 240
    assert limited.headers["Retry-After"] == str(error["retry_after"])
    advance(clock_file, 240)
    assert share(api, chat_id).status_code == 200
    assert len(control.shares(chat_id)) == 2
    calls = control.calls(chat_id)
    assert [(c["status"], c["code"]) for c in calls] == [
        (404, 2012),
        (404, 2012),
        (200, None),
        (429, 1007),
        (200, None),
    ]
    assert [c["applied"] for c in calls] == [False, False, True, False, True]


def test_opted_out_and_silent_chats_are_refused(
    api: httpx.Client, control: SimControl, clock_file: Path
) -> None:
    active_card(api, clock_file)
    chat_id = new_chat(api)
    inbound = control.inbound(chat_id, "STOP")
    assert inbound["chat"]["health_status"]["status"] == "OPTED_OUT"
    error_of(share(api, chat_id), 403, 2024)
    refused = api.post(
        f"/v3/chats/{chat_id}/messages",
        json={"message": {"parts": [{"type": "text", "value": "hello?"}]}},
    )
    error_of(refused, 403, 2024)
    listed = api.get("/v3/chats", params={"from": LINE}).json()["chats"]
    assert listed[0]["health_status"]["status"] == "OPTED_OUT"
    control.inbound(chat_id, "sorry, I want updates again")
    assert share(api, chat_id).status_code == 200

    [silent] = control.seed(LINE, 1, outbound=False)
    error_of(share(api, silent), 400, 1004)


def test_sms_chats_answer_2xx_and_are_flagged(
    api: httpx.Client, control: SimControl, clock_file: Path
) -> None:
    active_card(api, clock_file)
    chat_id = new_chat(api, service="SMS")
    assert share(api, chat_id).status_code == 200
    [recorded] = control.shares(chat_id)
    assert recorded["service"] == "SMS"
    assert recorded["effective"] is False


def test_share_fault_knobs(api: httpx.Client, control: SimControl, clock_file: Path) -> None:
    active_card(api, clock_file)
    chat_id = new_chat(api)

    control.faults(share_fault_rate=1.0)
    error_of(share(api, chat_id), 500, 3006)
    control.faults(share_fault_rate=0.0, share_429_rate=1.0, retry_after=7)
    limited = share(api, chat_id)
    assert error_of(limited, 429, 1007)["retry_after"] == 7
    assert limited.headers["Retry-After"] == "7"
    control.faults(share_429_rate=0.0, reset_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        share(api, chat_id)
    assert control.shares(chat_id) == []

    control.faults(reset_rate=0.0, timeout_rate=1.0, timeout_hold=1.0)
    with pytest.raises(httpx.ReadTimeout):
        api.post(f"/v3/chats/{chat_id}/share_contact_card", timeout=0.3)
    assert len(control.shares(chat_id)) == 1, "a timed-out share is still applied"

    faults = [(c["status"], c["code"], c["fault"]) for c in control.calls(chat_id)]
    assert faults == [
        (500, 3006, "share_5xx"),
        (429, 1007, "share_429"),
        (None, None, "reset"),
        (200, None, "timeout"),
    ]


def test_global_429_and_latency(api: httpx.Client, control: SimControl) -> None:
    control.faults(global_429_rate=1.0, retry_after=2.2)
    limited = api.get("/v3/chats")
    assert error_of(limited, 429, 1007)["retry_after"] == 3
    assert limited.headers["Retry-After"] == "3"
    control.faults(global_429_rate=0.0, latency_ms=200)
    started = time.monotonic()
    assert api.get("/v3/chats").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_bad_knobs_are_refused(control: SimControl, sim_server: SimHandle) -> None:
    refused = httpx.post(sim_server.base_url + "/_sim/faults", json={"reset_rate": 3})
    assert refused.status_code == 400
    assert "reset_rate" in refused.json()["error"]
    assert control.state()["knobs"]["reset_rate"] == 0.0


# -- webhooks ------------------------------------------------------------------------------


def test_webhooks_arrive_signed_and_in_order(
    api: httpx.Client, control: SimControl, receiver: Receiver, clock_file: Path
) -> None:
    receiver.deliveries.clear()
    control.webhooks(enabled=True, url=receiver.url)
    advance(clock_file, 86400)  # signatures must follow the shared clock, not the wall clock
    api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "Acme"})
    chat_id = new_chat(api)
    api.post(
        f"/v3/chats/{chat_id}/messages",
        json={"message": {"parts": [{"type": "text", "value": "again"}]}},
    )
    control.inbound(chat_id, "thanks!")
    assert control.drain(10)

    for headers, body in receiver.deliveries:
        verdict = verify(
            secrets=[SECRET],
            timestamp=headers.get("X-Webhook-Timestamp"),
            signature=headers.get("X-Webhook-Signature"),
            body=body,
            now_unix=clock.now().timestamp(),
            tolerance_seconds=60,
        )
        assert verdict is SignatureVerdict.valid
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Webhook-Subscription-ID"]
        assert headers["X-Webhook-Event"] == json.loads(body)["event_type"]
    events = receiver.events()
    in_chat = [e["event_type"] for e in events if e["event_type"] != "contact_card.created"]
    assert in_chat == [
        "chat.created",
        "message.sent",
        "message.delivered",
        "message.sent",
        "message.delivered",
        "message.received",
    ]
    card_event = next(e for e in events if e["event_type"] == "contact_card.created")
    assert card_event["data"]["contact_card"]["first_name"] == "Acme"
    assert card_event["data"]["phone_number"] == LINE
    first = events[1] if events[0]["event_type"] == "contact_card.created" else events[0]
    assert first["data"]["id"] == chat_id
    for event in events:
        assert event["api_version"] == "v3"
        assert event["webhook_version"] == "2026-02-03"
        assert set(event) >= {"event_id", "created_at", "trace_id", "partner_id", "data"}
    assert len({e["event_id"] for e in events}) == len(events)
    sent = next(e for e in events if e["event_type"] == "message.sent")["data"]
    assert sent["direction"] == "outbound"
    assert sent["chat"]["id"] == chat_id
    assert sent["chat"]["owner_handle"]["is_me"] is True
    assert sent["sender_handle"]["handle"] == LINE
    received = events[-1]["data"] if events[-1]["event_type"] == "message.received" else None
    assert received is not None
    assert received["direction"] == "inbound"
    assert received["sender_handle"]["handle"] == ALICE


def test_webhooks_retry_on_5xx_and_429_but_not_on_other_4xx(
    api: httpx.Client, control: SimControl, receiver: Receiver, clock_file: Path
) -> None:
    receiver.deliveries.clear()
    control.webhooks(enabled=True, url=receiver.url)
    receiver.script[:] = [503, 429, 200]
    api.post("/v3/contact_card", json={"phone_number": LINE, "first_name": "Acme"})
    assert control.drain(10)
    assert len(receiver.deliveries) == 3
    assert len({json.loads(body)["event_id"] for _, body in receiver.deliveries}) == 1

    receiver.script[:] = [400]
    advance(clock_file, 5)  # the card is active: it can be PATCHed
    api.patch("/v3/contact_card", params={"phone_number": LINE}, json={"first_name": "B"})
    assert control.drain(10)
    assert len(receiver.deliveries) == 4
    stats = control.state()["webhooks"]
    assert stats["pending"] == 0
    assert stats["failed"] >= 1


def test_disabled_webhooks_are_dropped(
    api: httpx.Client, control: SimControl, receiver: Receiver
) -> None:
    receiver.deliveries.clear()
    new_chat(api)
    assert control.drain(5)
    assert receiver.deliveries == []
    assert control.state()["webhooks"]["dropped"] >= 3


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "0", "--lines", "+14155550100,4155550111"],
        ["serve", "--port", "0", "--fault-rate", "1.5"],
        ["serve", "--port", "0", "--webhook-url", "http://127.0.0.1:9/hook"],
    ],
)
def test_cli_rejects_bad_flags_with_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(sim_app, args, env={"SIM_WEBHOOK_SECRET": ""})
    assert result.exit_code == 2, result.output


def test_cli_serves_on_a_free_port_and_stops_on_sigterm() -> None:
    code = "from scheduler.cli.sim_cmd import sim_app; sim_app()"
    env = {**os.environ, "SIM_TOKEN": "cli-token"}
    command = [sys.executable, "-c", code, "serve", "--port", "0", "--lines", LINE]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("sim: listening on http://127.0.0.1:"), line
            base = line.rsplit(" ", 1)[1].strip()
            assert httpx.get(base + "/_sim/health").json() == {"ok": True}
            denied = httpx.post(
                base + "/api/partner/v3/contact_card",
                json={"phone_number": OTHER_LINE, "first_name": "A"},
                headers={"Authorization": "Bearer cli-token"},
            )
            error_of(denied, 403, 2005)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
