"""Response objects of the Linq Partner API v3, as far as the daemon reads them.

Parsing is lenient on purpose: Linq adds fields over time and sometimes sends ``null`` where a
value is usually present. Unknown fields are ignored, nullable booleans read as ``False``,
nullable lists as empty, and every datetime comes out timezone-aware in UTC so comparisons
with :func:`scheduler.clock.now` never mix naive and aware values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

OPTED_OUT = "OPTED_OUT"


def _to_utc(value: datetime) -> datetime:
    # A timestamp without an offset is taken as UTC: that is what the API documents.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _null_false(value: Any) -> Any:
    return False if value is None else value


def _null_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _null_empty_str(value: Any) -> Any:
    return "" if value is None else value


def _empty_cursor(value: Any) -> Any:
    # An empty cursor would make a pager request the first page again, forever.
    return None if value == "" else value


UTCDateTime = Annotated[datetime, AfterValidator(_to_utc)]
Flag = Annotated[bool, BeforeValidator(_null_false)]
Cursor = Annotated[str | None, BeforeValidator(_empty_cursor)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


class ContactCard(_Model):
    phone_number: str
    first_name: Annotated[str, BeforeValidator(_null_empty_str)]
    last_name: str | None = None
    image_url: str | None = None
    is_active: Flag = False


class Handle(_Model):
    id: str
    handle: str
    service: str | None = None
    is_me: Flag = False
    joined_at: UTCDateTime | None = None
    left_at: UTCDateTime | None = None
    status: str | None = None


class HealthStatus(_Model):
    status: str
    updated_at: UTCDateTime | None = None


class Chat(_Model):
    id: str
    created_at: UTCDateTime
    updated_at: UTCDateTime
    is_group: Flag = False
    service: str | None = None
    handles: Annotated[list[Handle], BeforeValidator(_null_empty_list)] = Field(
        default_factory=list
    )
    health_status: HealthStatus | None = None

    @model_validator(mode="before")
    @classmethod
    def _updated_defaults_to_created(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("updated_at") is None and "created_at" in data:
            return {**data, "updated_at": data["created_at"]}
        return data

    @property
    def our_handle(self) -> str | None:
        """Our sending number in this chat (the ``is_me`` handle), if Linq listed it."""
        for handle in self.handles:
            if handle.is_me:
                return handle.handle
        return None

    @property
    def recipients(self) -> list[Handle]:
        return [handle for handle in self.handles if not handle.is_me]

    @property
    def opted_out(self) -> bool:
        return self.health_status is not None and self.health_status.status.upper() == OPTED_OUT


class Message(_Model):
    id: str
    chat_id: str
    is_from_me: Flag = False
    sent_at: UTCDateTime | None = None
    created_at: UTCDateTime
    delivery_status: str | None = None
    service: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _direction_fallback(cls, data: Any) -> Any:
        # Newer payloads say direction=outbound|inbound instead of is_from_me; a sent message
        # (SentMessage) says it with its from_handle.
        if isinstance(data, dict) and data.get("is_from_me") is None:
            if "direction" in data:
                return {**data, "is_from_me": data["direction"] == "outbound"}
            sender = data.get("from_handle")
            if isinstance(sender, dict) and isinstance(sender.get("is_me"), bool):
                return {**data, "is_from_me": sender["is_me"]}
        return data


class ChatPage(_Model):
    chats: Annotated[list[Chat], BeforeValidator(_null_empty_list)] = Field(default_factory=list)
    next_cursor: Cursor = None


class MessagePage(_Model):
    messages: Annotated[list[Message], BeforeValidator(_null_empty_list)] = Field(
        default_factory=list
    )
    next_cursor: Cursor = None


class BlockedHandle(_Model):
    """One entry of ``GET /v3/blocked_handles``: a handle our account has blocked."""

    handle: str
    blocked_at: UTCDateTime
    reason: str | None = None


class ShareResult(_Model):
    http_status: int
    trace_id: str | None = None
    latency_ms: float


class WebhookSubscription(_Model):
    """Where Linq sends events: one subscription per target URL."""

    id: str
    target_url: str
    subscribed_events: Annotated[list[str], BeforeValidator(_null_empty_list)] = Field(
        default_factory=list
    )
    # Empty: events of every line of the account.
    phone_numbers: Annotated[list[str], BeforeValidator(_null_empty_list)] = Field(
        default_factory=list
    )
    is_active: Flag = False
    created_at: UTCDateTime | None = None
    updated_at: UTCDateTime | None = None


class CreatedWebhookSubscription(WebhookSubscription):
    """A subscription just created: Linq shows its signing secret this once."""

    # SecretStr: the secret stays out of reprs, tracebacks and logs.
    signing_secret: SecretStr
