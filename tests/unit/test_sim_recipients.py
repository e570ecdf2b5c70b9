"""The simulator's account-wide rules: opt-outs per recipient, blocked handles, ineligible
lines; responses and events checked against Linq's SDK types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from linq.types import BlockedHandleListResponse
from linq.types.phone_number_status_updated_webhook_event import (
    PhoneNumberStatusUpdatedWebhookEvent,
)

from scheduler.ingest.events import EventError, parse_event
from scheduler.sim.model import Event, SimError
from scheduler.sim.settings import SimSettings
from scheduler.sim.state import SimState, is_opt_out_keyword
from scheduler.sim.webhooks import envelope

LINE = "+14155550100"
OTHER_LINE = "+14155550111"
ALICE = "+14155550199"
BOB = "+14155550198"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch, events: list[Event]) -> SimState:
    monkeypatch.setattr("scheduler.clock.now", lambda: T0)
    sim = SimState(SimSettings(activation_delay=0, seed=7), events.append)
    for number in (LINE, OTHER_LINE):
        sim.create_card({"phone_number": number, "first_name": "Acme"})
    return sim


def _chat(state: SimState, line: str, to: list[str]) -> str:
    body = {"from": line, "to": to, "message": {"parts": [{"type": "text", "value": "hi"}]}}
    chat, _ = state.create_chat(body)
    return chat.id


def _refused(call: Any, status: int, code: int) -> None:
    with pytest.raises(SimError) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (status, code)


@pytest.mark.parametrize(
    ("text", "stop"),
    [
        ("STOP", True),
        ("  stop ", True),
        ("Unsubscribe", True),
        ("optout", True),
        ("opt out", True),
        ("Opt-Out", True),
        ("cancel", True),
        ("END", True),
        ("quit", True),
        ("stop please", False),
        ("OPT  OUT", False),
        ("STOPALL", False),
        ("hello", False),
    ],
)
def test_opt_out_keywords_are_the_whole_trimmed_message(text: str, stop: bool) -> None:
    assert is_opt_out_keyword(text) is stop


def test_an_opt_out_holds_on_every_line_and_any_inbound_clears_it(state: SimState) -> None:
    alice1 = _chat(state, LINE, [ALICE])
    alice2 = _chat(state, OTHER_LINE, [ALICE])
    group = _chat(state, LINE, [ALICE, BOB])
    state.receive_message(alice1, "STOP")
    _refused(lambda: state.share(alice1), 403, 2024)
    _refused(lambda: state.share(alice2), 403, 2024)  # another line, same recipient
    state.share(group)  # group chats are never blocked
    # Only the chat where the keyword arrived says so in its health.
    assert state.chat_json(state.chats[alice1])["health_status"]["status"] == "OPTED_OUT"
    assert state.chat_json(state.chats[alice2])["health_status"]["status"] == "HEALTHY"
    state.receive_message(group, "see you", sender=ALICE)  # any conversation clears it
    state.share(alice1)
    state.share(alice2)


def test_a_blocked_handle_is_refused_and_its_messages_dropped(
    state: SimState, events: list[Event]
) -> None:
    alice = _chat(state, LINE, [ALICE])
    group = _chat(state, LINE, [ALICE, BOB])
    state.block(ALICE, "spam")
    _refused(lambda: state.share(alice), 403, 2026)
    _refused(lambda: _chat(state, OTHER_LINE, [ALICE]), 403, 2026)
    state.share(group)  # groups with unblocked members are not restricted
    before = len(events)
    assert state.receive_message(alice, "hello?") is None
    assert len(events) == before  # dropped before webhooks
    listed = BlockedHandleListResponse.model_validate({"blocked_handles": state.blocked_handles()})
    assert [(e.handle, e.reason) for e in listed.blocked_handles] == [(ALICE, "spam")]
    assert state.unblock(ALICE)
    state.share(alice)
    assert state.blocked_handles() == []


def test_an_ineligible_line_refuses_activity_and_reports_its_status(
    state: SimState, events: list[Event]
) -> None:
    chat = _chat(state, LINE, [ALICE])
    other = _chat(state, OTHER_LINE, [BOB])
    state.set_line_status(LINE, "FLAGGED", "AT_RISK")
    _refused(lambda: state.share(chat), 403, 2027)
    _refused(lambda: _chat(state, LINE, [BOB]), 403, 2027)
    body = {"message": {"parts": [{"type": "text", "value": "x"}]}}
    _refused(lambda: state.send_message(chat, body), 403, 2027)
    state.share(other)  # the other line goes on
    assert state.list_chats(LINE, 10, None).items  # reads keep working
    state.set_line_status(LINE, "ACTIVE", "HEALTHY")
    state.share(chat)

    updates = [e for e in events if e.event_type == "phone_number.status_updated"]
    assert [(e.data["new_status"], e.data["previous_status"]) for e in updates] == [
        ("FLAGGED", "ACTIVE"),
        ("ACTIVE", "FLAGGED"),
    ]
    for event in updates:
        payload = envelope(event, "partner-1")
        typed = PhoneNumberStatusUpdatedWebhookEvent.model_validate(payload)
        assert typed.data.phone_number == LINE
        parsed = parse_event(payload).line_status
        assert parsed is not None and parsed.line == LINE
        assert parsed.eligible is (event.data["new_status"] == "ACTIVE")


def test_a_critical_reputation_makes_a_line_ineligible_too(state: SimState) -> None:
    chat = _chat(state, LINE, [ALICE])
    state.set_line_status(LINE, "ACTIVE", "CRITICAL")
    _refused(lambda: state.share(chat), 403, 2027)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"new_status": "ACTIVE", "new_reputation": "HEALTHY"}, "data.phone_number"),
        ({"phone_number": "555", "new_status": "ACTIVE"}, "data.phone_number"),
        ({"phone_number": LINE, "new_status": "PAUSED"}, "data.new_status"),
        (
            {"phone_number": LINE, "new_status": "ACTIVE", "new_reputation": "GOOD"},
            "data.new_reputation",
        ),
        (
            {"phone_number": LINE, "new_status": "ACTIVE", "new_reputation": "HEALTHY"},
            "data.changed_at",
        ),
    ],
)
def test_a_bad_status_update_names_the_field(data: dict[str, Any], field: str) -> None:
    payload = {"event_id": "e", "event_type": "phone_number.status_updated", "data": data}
    if field != "data.changed_at":
        data.setdefault("changed_at", (T0 + timedelta(minutes=1)).isoformat())
    with pytest.raises(EventError, match=field.replace(".", r"\.")):
        parse_event(payload)
