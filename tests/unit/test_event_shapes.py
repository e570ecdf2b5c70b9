"""Today's Linq event shapes: the chat's service, queued messages, failures, membership, cards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from scheduler.core.merge import MergedChat
from scheduler.core.rule import Policy, next_share_at
from scheduler.core.status import CardState
from scheduler.ingest.events import EventError, parse_event
from scheduler.ledger.facts import chat_facts, line_facts
from tests.unit.test_events import _apply_all

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
LINE = "+14155550100"
ALICE = "+12125550199"
BOB = "+12125550198"
CAROL = "+12125550197"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def envelope(event_type: str, data: dict[str, Any], *, event_id: str = "ev-1") -> dict[str, Any]:
    return {
        "api_version": "v3",
        "event_id": event_id,
        "event_type": event_type,
        "created_at": _iso(T0),
        "trace_id": "trace",
        "partner_id": "partner",
        "webhook_version": "2026-02-03",
        "data": data,
    }


def chat_created(service: str = "iMessage", *, recipients: tuple[str, ...] = (ALICE,)) -> Any:
    handles = [{"id": "h0", "handle": LINE, "is_me": True, "service": service}]
    handles += [
        {"id": f"h{i}", "handle": r, "is_me": False, "service": service}
        for i, r in enumerate(recipients, 1)
    ]
    return envelope(
        "chat.created",
        {
            "id": "chat-1",
            "created_at": _iso(T0),
            "updated_at": _iso(T0),
            "is_group": len(recipients) > 1,
            "service": service,
            "handles": handles,
            "health_status": {"status": "HEALTHY", "updated_at": _iso(T0), "doc_url": "x"},
        },
        event_id="ev-chat",
    )


def message(
    event_type: str = "message.sent",
    *,
    service: str = "iMessage",
    sent_at: datetime | None = T0,
    event_id: str = "ev-msg",
) -> dict[str, Any]:
    return envelope(
        event_type,
        {
            "id": "msg-1",
            "direction": "outbound",
            "service": service,
            "sent_at": None if sent_at is None else _iso(sent_at),
            "delivered_at": None,
            "read_at": None,
            "chat": {
                "id": "chat-1",
                "is_group": False,
                "owner_handle": {"id": "h0", "handle": LINE, "is_me": True},
                "health_status": {"status": "HEALTHY", "updated_at": _iso(T0), "doc_url": "x"},
            },
            "sender_handle": {"id": "h0", "handle": LINE, "is_me": True},
            "parts": [{"type": "text", "value": "hi"}],
        },
        event_id=event_id,
    )


def merged(*payloads: dict[str, Any]) -> MergedChat:
    return _apply_all(list(payloads))


def test_a_message_downgraded_to_sms_leaves_an_imessage_chat_imessage() -> None:
    sms = message(service="SMS", sent_at=T0 + timedelta(minutes=1))
    for order in ((chat_created(), sms), (sms, chat_created())):
        chat = merged(*order)
        assert chat.service == "iMessage"
        # ... and so the chat stays due: the sharing rule sees an iMessage chat.
        line = line_facts(CardState.active, False, None)
        due = next_share_at(
            chat_facts(SimpleNamespace(**chat._asdict(), not_before=None)), line, Policy(), T0
        )
        assert due is not None


def test_an_sms_message_alone_does_not_decide_the_chat_service() -> None:
    assert merged(message(service="SMS")).service is None
    # A message sent over iMessage proves the chat is one.
    assert merged(message(service="SMS"), message(event_id="e2")).service == "iMessage"
    # The chat object decides over any message.
    assert merged(message(), chat_created("SMS")).service == "SMS"


def test_sent_at_null_falls_back_to_the_event_time() -> None:
    act = parse_event(message(sent_at=None)).activity
    assert act is not None
    assert act.outbound_at == T0


def test_sent_at_null_without_any_time_names_the_field() -> None:
    payload = message(sent_at=None)
    del payload["created_at"]
    with pytest.raises(EventError, match="sent_at"):
        parse_event(payload)


def test_message_failed_is_acknowledged_without_activity() -> None:
    payload = envelope(
        "message.failed",
        {
            "code": 4001,
            "failed_at": _iso(T0),
            "chat_id": "chat-1",
            "message_id": "msg-1",
            "service": "iMessage",
            "reason": "undeliverable",
        },
    )
    event = parse_event(payload)
    assert event.event_type == "message.failed"
    assert event.activity is None
    assert event.card_number is None


def participant(event_type: str, handle: str, *, event_id: str) -> dict[str, Any]:
    return envelope(
        event_type,
        {
            "handle": handle,
            "chat_id": "chat-1",
            "participant": {
                "id": f"h-{handle}",
                "handle": handle,
                "service": "iMessage",
                "joined_at": _iso(T0),
                "is_me": False,
            },
            ("added_at" if event_type == "participant.added" else "removed_at"): _iso(T0),
        },
        event_id=event_id,
    )


def test_participant_added_makes_a_group_with_the_new_member() -> None:
    chat = merged(
        chat_created(recipients=(ALICE,)), participant("participant.added", BOB, event_id="p1")
    )
    assert chat.recipients == ",".join(sorted((ALICE, BOB)))
    assert chat.is_group is True


def test_participant_removed_leaves_the_recipients() -> None:
    chat = merged(
        chat_created(recipients=(ALICE, BOB, CAROL)),
        participant("participant.removed", BOB, event_id="p2"),
    )
    assert chat.recipients == ",".join(sorted((ALICE, CAROL)))
    assert chat.is_group is True


def test_participant_event_without_a_chat_id_is_ignored() -> None:
    payload = participant("participant.added", BOB, event_id="p3")
    del payload["data"]["chat_id"]
    assert parse_event(payload).activity is None


def test_participant_event_names_a_bad_handle() -> None:
    payload = participant("participant.added", BOB, event_id="p4")
    payload["data"]["handle"] = 7
    payload["data"]["participant"] = None
    with pytest.raises(EventError, match=r"data\.handle"):
        parse_event(payload)


def card_event(event_type: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "actor": {"type": "api"},
        "origin": "api",
        "occurred_at": _iso(T0),
        "summary": "Contact card updated",
        "phone_number": LINE,
        "contact_card": {"id": "card-1", "first_name": "Ada", "last_name": "Lovelace"},
        **extra,
    }
    return envelope(event_type, data, event_id=f"ev-{event_type}")


@pytest.mark.parametrize(
    "event_type", ["contact_card.created", "contact_card.updated", "contact_card.deleted"]
)
def test_card_account_events_ask_for_a_reread_of_the_line(event_type: str) -> None:
    change = {"first_name": {"from": "Ada", "to": "Grace"}}
    event = parse_event(card_event(event_type, change=change))
    assert event.card_number == LINE
    assert event.activity is None


def test_card_event_with_a_bad_line_names_the_field() -> None:
    with pytest.raises(EventError, match=r"data\.phone_number"):
        parse_event(card_event("contact_card.updated", phone_number="415 555"))


def test_card_event_with_a_bad_card_names_the_field() -> None:
    with pytest.raises(EventError, match=r"data\.contact_card"):
        parse_event(card_event("contact_card.created", contact_card="card-1"))


def test_a_card_received_from_a_recipient_is_not_ours() -> None:
    payload = envelope(
        "contact_card.received",
        {"chat_id": "chat-1", "phone_number": LINE, "contact_card": {"first_name": "Bob"}},
    )
    event = parse_event(payload)
    assert event.card_number is None
    assert event.activity is None


def test_chat_updated_is_not_a_linq_event() -> None:
    payload = chat_created()
    payload["event_type"] = "chat.updated"
    assert parse_event(payload).activity is None


def test_the_event_time_is_read_only_when_it_stands_in() -> None:
    # A message that says when it was sent does not depend on the envelope's created_at.
    payload = message()
    payload["created_at"] = "not a time"
    act = parse_event(payload).activity
    assert act is not None and act.outbound_at == T0
    payload["data"]["sent_at"] = None
    with pytest.raises(EventError, match="created_at"):
        parse_event(payload)
