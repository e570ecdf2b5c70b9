"""Linq webhook payloads to plain chat activity. Pure code: no I/O, no clock.

Two payload formats exist: "2026-02-03" (``direction``) and the older "2025-01-01"
(``is_from_me``, message nested under ``message``). Unknown event types are acknowledged
and ignored.

A message's ``service`` is the transport of that one message (Apple can downgrade a single
message to SMS); what the chat is comes from the chat object (``chat.created``, backfill). A
message only proves a chat whose service is not known yet to be iMessage. ``message.failed``
is acknowledged and ignored: a failed send is no outbound activity. ``contact_card.*`` are
account events naming the line whose card changed; ``contact_card.received`` is a recipient's
card, not ours. There is no ``chat.updated`` event in Linq's API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from scheduler import validate
from scheduler.core.event import ChatActivity, Event, LineStatus
from scheduler.validate import MAX_ID_LENGTH, InvalidValue

MESSAGE_EVENTS = frozenset(
    {"message.sent", "message.delivered", "message.read", "message.received"}
)
CHAT_EVENTS = frozenset({"chat.created"})
PARTICIPANT_EVENTS = frozenset({"participant.added", "participant.removed"})
CARD_EVENTS = frozenset({"contact_card.created", "contact_card.updated", "contact_card.deleted"})
# Read and deliberately ignored (still their own metric label).
IGNORED_EVENTS = frozenset({"message.failed", "contact_card.received"})
LINE_STATUS_EVENT = "phone_number.status_updated"
KNOWN_EVENTS = (
    MESSAGE_EVENTS | CHAT_EVENTS | PARTICIPANT_EVENTS | CARD_EVENTS | IGNORED_EVENTS
) | {LINE_STATUS_EVENT}
LINE_STATUSES = frozenset({"ACTIVE", "FLAGGED"})
LINE_REPUTATIONS = frozenset({"HEALTHY", "AT_RISK", "CRITICAL"})
# Times outside this range are not activity Linq can have seen; rejecting them also keeps
# date arithmetic in the sharing rule (+ intervals, + inactivity days) from overflowing.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class EventError(ValueError):
    """A validly signed payload that is not a usable event."""


def parse_time(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{field}: expected an ISO-8601 time")
    _checked(validate.check_time_text, value, field)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise EventError(f"{field}: {value[:40]!r} is not an ISO-8601 time") from exc
    if not EARLIEST <= parsed < LATEST:
        raise EventError(f"{field}: {value[:40]!r} is outside the years 2000-2099")
    return parsed


def _obj(value: Any, field: str, *, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"{field}: expected an object")
    return value


def _checked(check: Callable[[str], str], value: str, field: str) -> str:
    try:
        return check(value)
    except InvalidValue as exc:
        raise EventError(f"{field}: {exc}") from exc


def _str(
    value: Any, field: str, *, required: bool = False, limit: int = MAX_ID_LENGTH
) -> str | None:
    if value is None:
        if required:
            raise EventError(f"{field}: missing")
        return None
    if not isinstance(value, str):
        raise EventError(f"{field}: expected a string")
    return _checked(lambda v: validate.check_plain_text(v, limit=limit), value, field)


def _id(value: Any, field: str, *, required: bool = False) -> str | None:
    """A chat, message or event id."""
    text = _str(value, field, required=required)
    return None if text is None else _checked(validate.check_identifier, text, field)


def _line(value: Any, field: str) -> str | None:
    """Our own number: E.164, or the chat cannot be matched to a line."""
    number = _str(value, field, limit=32)
    return None if number is None else _checked(validate.check_phone_number, number, field)


def _recipient(value: Any, field: str) -> str | None:
    handle = _str(value, field, limit=validate.MAX_HANDLE_LENGTH)
    return None if handle is None else _checked(validate.check_handle, handle, field)


def _bool(value: Any, field: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise EventError(f"{field}: expected true or false")
    return value


def _handle(value: Any, field: str) -> str | None:
    handle = _obj(value, field)
    return _recipient(handle.get("handle"), f"{field}.handle")


def _owner(value: Any, field: str) -> str | None:
    handle = _obj(value, field)
    return _line(handle.get("handle"), f"{field}.handle")


def _opt_out(chat: dict[str, Any], field: str) -> tuple[bool, datetime | None]:
    """Whether the chat's health says opted out, and since when if it says."""
    health = _obj(chat.get("health_status"), f"{field}.health_status")
    if health.get("status") != "OPTED_OUT":
        return False, None
    return True, parse_time(health.get("updated_at"), f"{field}.health_status.updated_at")


def _chat_activity(chat: dict[str, Any], field: str) -> ChatActivity:
    chat_id = _id(chat.get("id"), f"{field}.id", required=True)
    assert chat_id is not None
    handles = chat.get("handles")
    line = None
    recipients: list[str] = []
    if handles is not None:
        if not isinstance(handles, list) or len(handles) > 1000:
            raise EventError(f"{field}.handles: expected a list")
        for i, item in enumerate(handles):
            handle = _obj(item, f"{field}.handles.{i}", required=True)
            where = f"{field}.handles.{i}.handle"
            if handle.get("is_me") is True:
                value = _line(handle.get("handle"), where)
            else:
                value = _recipient(handle.get("handle"), where)
            if value is None or handle.get("left_at"):
                continue
            if handle.get("is_me") is True:
                line = value
            else:
                recipients.append(value)
    opted_out, opted_out_at = _opt_out(chat, field)
    return ChatActivity(
        chat_id=chat_id,
        line=line,
        recipients=tuple(recipients) if handles is not None else None,
        is_group=_bool(chat.get("is_group"), f"{field}.is_group"),
        service=_str(chat.get("service"), f"{field}.service", limit=16),
        opted_out=opted_out,
        opted_out_at=opted_out_at,
    )


def _event_time(envelope: dict[str, Any]) -> datetime | None:
    return parse_time(envelope.get("created_at"), "created_at")


def _message_activity(
    event_type: str, data: dict[str, Any], envelope: dict[str, Any]
) -> ChatActivity:
    if "message" in data and "direction" not in data:
        return _legacy_message_activity(event_type, data, envelope)
    chat = _obj(data.get("chat"), "data.chat", required=True)
    chat_id = _id(chat.get("id"), "data.chat.id", required=True)
    _id(data.get("id"), "data.id")
    assert chat_id is not None
    direction = data.get("direction")
    if direction not in ("outbound", "inbound"):
        direction = "inbound" if event_type == "message.received" else "outbound"
    # sent_at is null while a message is queued: the event's own time stands in for it.
    at = (
        parse_time(data.get("sent_at"), "data.sent_at")
        or parse_time(data.get("delivered_at"), "data.delivered_at")
        or _event_time(envelope)
    )
    if at is None:
        raise EventError("data.sent_at: missing, and no created_at to stand in for it")
    inbound = direction == "inbound"
    sender = _handle(data.get("sender_handle"), "data.sender_handle") if inbound else None
    opted_out, opted_out_at = _opt_out(chat, "data.chat")
    if opted_out and opted_out_at is None:
        # Undated: the STOP message itself, or no later than the message that reports it. A
        # time orders the opt-out against the recipient's other messages, whatever order the
        # events arrive in.
        opted_out_at = at
    return ChatActivity(
        chat_id=chat_id,
        line=_owner(chat.get("owner_handle"), "data.chat.owner_handle"),
        recipients=(sender,) if sender else None,
        is_group=_bool(chat.get("is_group"), "data.chat.is_group"),
        message_service=_str(data.get("service"), "data.service", limit=16),
        outbound_at=None if inbound else at,
        inbound_at=at if inbound else None,
        opted_out=opted_out,
        opted_out_at=opted_out_at,
        historical=data.get("reconciled_at") is not None,
    )


def _legacy_message_activity(
    event_type: str, data: dict[str, Any], envelope: dict[str, Any]
) -> ChatActivity:
    message = _obj(data.get("message"), "data.message", required=True)
    chat = _obj(message.get("chat") or data.get("chat"), "data.message.chat")
    _id(message.get("id"), "data.message.id")
    chat_id = _id(
        message.get("chat_id") or data.get("chat_id") or chat.get("id"),
        "data.message.chat_id",
        required=True,
    )
    assert chat_id is not None
    from_me = _bool(message.get("is_from_me"), "data.message.is_from_me")
    if from_me is None:
        from_me = event_type != "message.received"
    at = parse_time(
        message.get("sent_at") or message.get("created_at"), "data.message.sent_at"
    ) or _event_time(envelope)
    if at is None:
        raise EventError("data.message.sent_at: missing")
    opted_out, opted_out_at = _opt_out(chat, "data.message.chat") if chat else (False, None)
    if opted_out and opted_out_at is None:
        opted_out_at = at  # as in _message_activity
    return ChatActivity(
        chat_id=chat_id,
        line=_line(message.get("from"), "data.message.from") if from_me else None,
        message_service=_str(message.get("service"), "data.message.service", limit=16),
        outbound_at=at if from_me else None,
        inbound_at=None if from_me else at,
        opted_out=opted_out,
        opted_out_at=opted_out_at,
        historical=message.get("reconciled_at") is not None,
    )


def _participant_activity(event_type: str, data: dict[str, Any]) -> ChatActivity | None:
    """A group's member added or removed; None when the event names no chat."""
    chat_id = _str(data.get("chat_id"), "data.chat_id")
    member = _obj(data.get("participant"), "data.participant")
    if member.get("handle") is not None:
        handle = _recipient(member.get("handle"), "data.participant.handle")
    else:
        handle = _recipient(data.get("handle"), "data.handle")
    if chat_id is None or handle is None or member.get("is_me") is True:
        return None
    if event_type == "participant.added":
        # Members are added to group chats only.
        return ChatActivity(chat_id=chat_id, recipients=(handle,), is_group=True)
    return ChatActivity(chat_id=chat_id, removed_recipients=(handle,))


def _card_number(data: dict[str, Any]) -> str | None:
    """The line of a contact_card account event, its shape checked."""
    _obj(data.get("actor"), "data.actor")
    card = _obj(data.get("contact_card"), "data.contact_card")
    _str(card.get("id"), "data.contact_card.id")
    return _line(data.get("phone_number"), "data.phone_number")


def _choice(value: Any, field: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise EventError(f"{field}: expected one of {', '.join(sorted(allowed))}")
    return str(value)


def _line_status(data: dict[str, Any]) -> LineStatus:
    line = _line(data.get("phone_number"), "data.phone_number")
    changed_at = parse_time(data.get("changed_at"), "data.changed_at")
    if line is None:
        raise EventError("data.phone_number: missing")
    if changed_at is None:
        raise EventError("data.changed_at: missing")
    return LineStatus(
        line=line,
        status=_choice(data.get("new_status"), "data.new_status", LINE_STATUSES),
        reputation=_choice(data.get("new_reputation"), "data.new_reputation", LINE_REPUTATIONS),
        changed_at=changed_at,
    )


def parse_event(payload: Any) -> Event:
    """Validate an envelope; raise EventError naming the first bad field."""
    envelope = _obj(payload, "body", required=True)
    event_id = _id(envelope.get("event_id"), "event_id", required=True)
    event_type = _str(envelope.get("event_type"), "event_type", required=True, limit=64)
    assert event_id is not None and event_type is not None
    data = envelope.get("data")
    if event_type in MESSAGE_EVENTS:
        activity = _message_activity(event_type, _obj(data, "data", required=True), envelope)
        return Event(event_id, event_type, activity)
    if event_type in CHAT_EVENTS:
        return Event(
            event_id, event_type, _chat_activity(_obj(data, "data", required=True), "data")
        )
    if event_type in PARTICIPANT_EVENTS:
        membership = _participant_activity(event_type, _obj(data, "data", required=True))
        return Event(event_id, event_type, membership)
    if event_type in CARD_EVENTS:
        return Event(event_id, event_type, card_number=_card_number(_obj(data, "data")))
    if event_type == LINE_STATUS_EVENT:
        status = _line_status(_obj(data, "data", required=True))
        return Event(event_id, event_type, line_status=status)
    return Event(event_id, event_type)
