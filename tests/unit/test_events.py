"""Webhook payloads to chat activity, and merging activity in any order."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from scheduler.core.merge import MergedChat, merge_activity
from scheduler.core.status import ChatStatus
from scheduler.ingest.events import EventError, parse_event
from tests.factories import EVENT_CUSTOMER, EVENT_LINE, EVENT_TIME, message_event

T0 = EVENT_TIME
LINE = EVENT_LINE
CUSTOMER = EVENT_CUSTOMER


def test_outbound_message_sets_line_and_outbound_time() -> None:
    event = parse_event(message_event("message.sent"))
    assert event.activity is not None
    assert event.activity.chat_id == "chat-1"
    assert event.activity.line == LINE
    assert event.activity.outbound_at == T0
    assert event.activity.inbound_at is None


def test_inbound_message_records_recipient() -> None:
    event = parse_event(message_event("message.received", direction="inbound"))
    assert event.activity is not None
    assert event.activity.inbound_at == T0
    assert event.activity.recipients == (CUSTOMER,)


def test_chat_created_reads_handles() -> None:
    payload = {
        "event_id": "ev-c",
        "event_type": "chat.created",
        "data": {
            "id": "chat-9",
            "is_group": True,
            "service": "SMS",
            "handles": [
                {"handle": LINE, "is_me": True},
                {"handle": CUSTOMER, "is_me": False},
                {"handle": "+33612345678", "is_me": False},
            ],
            "health_status": {"status": "OPTED_OUT"},
        },
    }
    act = parse_event(payload).activity
    assert act is not None
    assert act.line == LINE
    assert act.recipients == (CUSTOMER, "+33612345678")
    assert act.is_group is True
    assert act.service == "SMS"
    assert act.opted_out is True


def test_legacy_format_with_is_from_me() -> None:
    payload = {
        "event_id": "ev-old",
        "event_type": "message.sent",
        "webhook_version": "2025-01-01",
        "data": {
            "message": {
                "id": "m",
                "chat_id": "chat-old",
                "is_from_me": True,
                "from": LINE,
                "sent_at": "2026-05-04T15:00:00Z",
                "service": "iMessage",
            }
        },
    }
    act = parse_event(payload).activity
    assert act is not None
    assert (act.chat_id, act.line, act.outbound_at) == ("chat-old", LINE, T0)


def test_unknown_event_type_is_accepted_without_activity() -> None:
    event = parse_event({"event_id": "e", "event_type": "reaction.added", "data": {"x": 1}})
    assert event.activity is None
    assert event.event_type == "reaction.added"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "body"),
        ({"event_type": "message.sent"}, "event_id"),
        ({"event_id": "x", "event_type": "message.sent", "data": {}}, "data.chat"),
        (
            {"event_id": "x", "event_type": "message.sent", "data": {"chat": {"id": 5}}},
            "data.chat.id",
        ),
        (
            {
                "event_id": "x",
                "event_type": "message.sent",
                "data": {"chat": {"id": "c"}, "sent_at": "yesterday"},
            },
            "data.sent_at",
        ),
        ({"event_id": "x" * 500, "event_type": "message.sent"}, "event_id"),
    ],
)
def test_malformed_events_name_the_field(payload: Any, field: str) -> None:
    with pytest.raises(EventError, match=field.replace(".", r"\.")):
        parse_event(payload)


def _apply_all(events: list[dict[str, Any]]) -> MergedChat:
    chat: MergedChat | None = None
    for payload in events:
        act = parse_event(payload).activity
        assert act is not None
        chat = merge_activity(chat, act)
    assert chat is not None
    return chat


def test_any_order_gives_the_same_chat() -> None:
    events = [
        message_event("message.sent", event_id="a", sent_at=T0),
        message_event("message.delivered", event_id="b", sent_at=T0),
        message_event("message.sent", event_id="c", sent_at=T0 + timedelta(hours=3)),
        message_event(
            "message.received", event_id="d", direction="inbound", sent_at=T0 + timedelta(hours=1)
        ),
    ]
    clean = _apply_all(events)
    assert clean.first_outbound_at == T0
    assert clean.last_outbound_at == T0 + timedelta(hours=3)
    assert clean.last_inbound_at == T0 + timedelta(hours=1)
    for order in itertools.permutations(events):
        assert _apply_all(list(order) + list(order)) == clean


def test_opt_out_then_inbound_opts_back_in() -> None:
    chat = _apply_all([message_event("message.sent")])
    stop = parse_event(
        message_event(
            "message.received",
            direction="inbound",
            health="OPTED_OUT",
            sent_at=T0 + timedelta(minutes=1),
        )
    ).activity
    assert stop is not None
    chat = merge_activity(chat, stop)
    assert chat.status == ChatStatus.opted_out
    hello = parse_event(
        message_event("message.received", direction="inbound", sent_at=T0 + timedelta(days=1))
    ).activity
    assert hello is not None
    assert merge_activity(chat, hello).status == ChatStatus.active
