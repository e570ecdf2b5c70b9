"""The simulated account's records and their JSON shapes, as documented for Linq's API v3."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SERVICES = ("iMessage", "SMS", "RCS")


def iso(at: datetime | None) -> str | None:
    """UTC, millisecond precision, ``Z`` suffix: the format Linq uses."""
    if at is None:
        return None
    text = at.isoformat(timespec="milliseconds")
    if text.endswith("+00:00"):
        return text[:-6] + "Z"
    return at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class SimError(Exception):
    """An error answer of the API: HTTP status, Linq error code, message."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        retry_after: float | None = None,
        fault: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        # Set when a fault knob, not a rule of the API, produced this answer.
        self.fault = fault


@dataclass(slots=True)
class Card:
    phone_number: str
    first_name: str
    last_name: str | None
    image_url: str | None
    # When the last write finishes applying to the line; None after a 4004 (left inactive).
    active_at: datetime | None

    def is_active(self, at: datetime) -> bool:
        return self.active_at is not None and at >= self.active_at

    def to_json(self, at: datetime) -> dict[str, Any]:
        return {
            "phone_number": self.phone_number,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "image_url": self.image_url,
            "is_active": self.is_active(at),
        }


@dataclass(slots=True)
class Handle:
    id: str
    handle: str
    service: str
    is_me: bool
    joined_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "handle": self.handle,
            "service": self.service,
            "is_me": self.is_me,
            "joined_at": iso(self.joined_at),
            "left_at": None,
            "status": "active",
        }


@dataclass(slots=True)
class Message:
    id: str
    chat_id: str
    sender: Handle
    service: str
    parts: list[dict[str, Any]]
    created_at: datetime
    # "delivered" (the simulator delivers at once), or "failed" once a test fails it.
    status: str = "delivered"

    @property
    def is_from_me(self) -> bool:
        return self.sender.is_me

    def to_json(self) -> dict[str, Any]:
        """A listed message (the SDK's ``Message``)."""
        at = iso(self.created_at)
        return {
            "id": self.id,
            "chat_id": self.chat_id,
            "is_from_me": self.is_from_me,
            "sent_at": at,
            "created_at": at,
            "updated_at": at,
            # The simulator delivers instantly; the webhooks still go sent -> delivered.
            "delivery_status": self.status,
            "is_delivered": self.status == "delivered",
            "delivered_at": at if self.status == "delivered" else None,
            "is_read": False,
            "service": self.service,
            "from": self.sender.handle,
            "from_handle": self.sender.to_json(),
            "parts": self.parts,
        }

    def sent_json(self) -> dict[str, Any]:
        """The message as a send answers it (the SDK's ``SentMessage``)."""
        at = iso(self.created_at)
        return {
            "id": self.id,
            "created_at": at,
            "sent_at": at,
            "delivered_at": None,
            "delivery_status": "sent",
            "is_read": False,
            "service": self.service,
            "from_handle": self.sender.to_json(),
            "parts": self.parts,
        }


@dataclass(slots=True)
class Chat:
    id: str
    from_number: str
    me: Handle
    recipients: list[Handle]
    service: str
    is_group: bool
    created_at: datetime
    updated_at: datetime
    messages: list[Message] = field(default_factory=list)
    has_outbound: bool = False
    last_share_at: datetime | None = None

    @property
    def display_name(self) -> str:
        # Linq's default: the recipients' handles, comma-separated.
        return ", ".join(h.handle for h in self.recipients)

    def handles_json(self) -> list[dict[str, Any]]:
        """Our handle first, then the recipients'."""
        return [self.me.to_json(), *(h.to_json() for h in self.recipients)]

    def to_json(self, health: dict[str, Any]) -> dict[str, Any]:
        """A chat as listed and read (the SDK's ``Chat``)."""
        return {
            "id": self.id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "display_name": self.display_name,
            "is_archived": False,
            "is_group": self.is_group,
            "service": self.service,
            "handles": self.handles_json(),
            "health_status": health,
        }

    def created_json(self, health: dict[str, Any], message: Message) -> dict[str, Any]:
        """``POST /v3/chats``'s answer (the SDK's ``ChatCreateResponse``)."""
        return {
            "chat": {
                "id": self.id,
                "display_name": self.display_name,
                "is_group": self.is_group,
                "service": self.service,
                "handles": self.handles_json(),
                "health_status": health,
                "message": message.sent_json(),
            }
        }


@dataclass(slots=True)
class Share:
    chat_id: str
    from_number: str
    service: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "from": self.from_number,
            "service": self.service,
            # Linq answers 2xx on SMS/RCS chats, but the card never reaches the recipient.
            "effective": self.service == "iMessage",
            "at": iso(self.at),
        }


@dataclass(slots=True)
class ShareCall:
    chat_id: str
    at: datetime
    status: int | None  # None: the connection was dropped without an answer
    code: int | None
    trace_id: str
    applied: bool
    fault: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "at": iso(self.at),
            "status": self.status,
            "code": self.code,
            "trace_id": self.trace_id,
            "applied": self.applied,
            "fault": self.fault,
        }


@dataclass(slots=True)
class Event:
    """One webhook event, stamped when the traffic that caused it happened."""

    event_id: str
    event_type: str
    created_at: datetime
    trace_id: str
    # Deliveries with the same key keep their creation order (a chat id, or a card's number).
    key: str
    data: dict[str, Any]
