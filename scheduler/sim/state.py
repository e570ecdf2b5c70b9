"""The in-memory Linq account behind the simulator, with the rules of linq-api.md.

Every timestamp and every rate-limit window reads :func:`scheduler.clock.now`, so a test that
moves the shared clock moves the simulator with it. Every operation is O(1) in the number of
chats (dict lookups and appends), so the simulator keeps up with benchmarks.

Where the documentation is silent, these choices are made:

- ``GET /v3/contact_card?phone_number=`` for a number without a card answers 404/2012 rather
  than an empty list (the code's documented meaning is "contact card not found").
- Card writes (``POST`` and ``PATCH``) are counted against the 3-per-10-minutes budget once the
  phone number and body are valid, before existence is checked: a ``POST`` answered 2014 or a
  ``PATCH`` answered 2012 still spends a slot, as a gateway limiter would. Calls refused with
  429 do not. A 4004 leaves the card stored but inactive until the next successful write; a
  2022 leaves the card as it was.
- Share checks run in this order: 2001 unknown chat, 2005 line not on the account, 2027 line
  ineligible, 2012 no active card, 2026 recipient blocked, 2024 recipient opted out, 1004 no
  outbound message, 1007 shared less than 5 minutes ago. Only applied shares start the
  5-minute window. The timeout fault holds only answers to applied shares (the ambiguous
  case); refusals are answered at once.
- ``POST /v3/chats`` to the same recipients from the same number over the same service reuses
  the existing chat (and sends the message there) instead of opening a second one.
- Lists (chats, messages) are in creation order, oldest first; cursors are opaque.
- Opt-outs hold per recipient across the whole account (every chat, every line), as Linq
  has it; the chat's ``health_status`` says ``OPTED_OUT`` only in the 1:1 chat where the
  keyword arrived. Group chats are never marked nor blocked.
- Cards: ``POST`` on a pending card is accepted (setup continues, the card stays pending for
  the activation delay); 2014 only once the card is active. ``PATCH`` needs an active card
  (404/2012 otherwise). ``GET`` lists active cards only; a one-number ``GET`` of a pending card
  answers 404/2012 like a missing one.
- Blocked handles (our account's list): direct sends and shares to them answer 403/2026, their
  inbound messages are dropped before webhooks. An ineligible line (flagged by a test) answers
  403/2027 to every share, send and new chat on it; reads keep working.
- Error codes where the documentation only gives a range: 1001 malformed request or parameter,
  1002 phone number not E.164, 1003 required field missing, 1004 share without an outbound
  message, 1005 unsupported value (service, message part type).
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from scheduler import clock
from scheduler.config import E164
from scheduler.sim.model import (
    SERVICES,
    Card,
    Chat,
    Event,
    Handle,
    Message,
    Share,
    ShareCall,
    SimError,
    iso,
)
from scheduler.sim.settings import SimSettings

CARD_WRITE_LIMIT = 3
CARD_WRITE_WINDOW = timedelta(minutes=10)
SHARE_INTERVAL = timedelta(minutes=5)
MAX_PAGE = 100
DEFAULT_PAGE = 20
OPT_OUT_WORDS = frozenset({"STOP", "UNSUBSCRIBE", "OPTOUT", "CANCEL", "END", "QUIT"})
# "OPT OUT" in any casing, with or without a space or a hyphen.
_OPT_OUT_PHRASE = re.compile(r"OPT[ -]?OUT")
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HEALTH_DOC_URL = "https://docs.linqapp.com/channel/imessage/guides/chats/chat-health#"

ShareFault = Literal["timeout", "reset"]
EventSink = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[Any]
    next_cursor: str | None


def _encode_cursor(kind: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(kind: str, cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, offset = text.partition(":")
        if prefix == kind and offset.isdigit():
            return int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise SimError(400, 1001, "invalid cursor")


def check_phone(value: Any, field: str = "phone_number") -> str:
    if value is None or value == "":
        raise SimError(400, 1003, f"{field} is required")
    if not isinstance(value, str) or not E164.match(value):
        raise SimError(400, 1002, f"{field} must be an E.164 phone number, got {value!r}")
    return value


def check_parts(message: Any) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise SimError(400, 1003, "message is required")
    parts = message.get("parts")
    if not isinstance(parts, list) or not parts:
        raise SimError(400, 1003, "message.parts must be a non-empty list")
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise SimError(400, 1001, "each message part needs a type")
        if part["type"] != "text":
            raise SimError(400, 1005, f"unsupported message part type {part['type']!r}")
        if not isinstance(part.get("value"), str) or not part["value"]:
            raise SimError(400, 1003, "a text part needs a non-empty value")
    return [{"type": "text", "value": p["value"]} for p in parts]


def check_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise SimError(400, 1001, f"limit must be an integer from 1 to {MAX_PAGE}, got {raw!r}")
    return int(raw)


class SimState:
    """One partner account: its cards, chats, messages, shares and limits."""

    def __init__(self, settings: SimSettings, sink: EventSink | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.faults = random.Random(settings.seed)
        # Ids come from their own generator, so fault draws do not depend on traffic volume.
        self._ids = random.Random(None if settings.seed is None else settings.seed + 1)
        self.reset()

    def reset(self) -> None:
        self.cards: dict[str, Card] = {}
        self.card_writes: dict[str, deque[datetime]] = {}
        self.chats: dict[str, Chat] = {}
        self.chat_order: list[Chat] = []
        self.chats_by_line: dict[str, list[Chat]] = {}
        self._chat_keys: dict[tuple[str, str, tuple[str, ...]], Chat] = {}
        # Account-wide: handle -> the 1:1 chat where the keyword arrived (its health shows it).
        self.opted_out: dict[str, str | None] = {}
        self._health_changed: dict[str, datetime] = {}
        self.blocked: dict[str, tuple[datetime, str | None]] = {}
        self.ineligible_lines: dict[str, str] = {}  # number -> reputation while FLAGGED
        self.card_calls: list[dict[str, Any]] = []
        self.shares: list[Share] = []
        self.shares_by_chat: dict[str, list[Share]] = {}
        self.calls: list[ShareCall] = []
        self.calls_by_chat: dict[str, list[ShareCall]] = {}
        self.message_count = 0
        self._seeded = 0

    # -- ids, fault draws, account access --------------------------------------------------

    def new_id(self) -> str:
        """A random (seeded) UUID4 string; formatted by hand because uuid.UUID is slow."""
        bits = self._ids.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET
        digits = f"{bits:032x}"
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.faults.random() < rate

    def check_line(self, number: str) -> None:
        lines = self.settings.lines
        if lines is not None and number not in lines:
            raise SimError(403, 2005, f"{number} is not a line of this account")

    def _account_number(self, value: Any, field: str = "phone_number") -> str:
        """``value`` as one of the account's numbers: E.164 (1002, 1003), then ours (2005)."""
        number = check_phone(value, field)
        self.check_line(number)
        return number

    def emit(self, event_type: str, key: str, data: dict[str, Any], trace_id: str) -> None:
        """Send a webhook event (when webhooks are on); ``key`` keeps its events in order."""
        if self.sink is not None:
            event = Event(self.new_id(), event_type, clock.now(), trace_id, key, data)
            self.sink(event)

    # -- cards -----------------------------------------------------------------------------

    def _spend_card_write(self, number: str, at: datetime) -> None:
        writes = self.card_writes.setdefault(number, deque())
        while writes and writes[0] + CARD_WRITE_WINDOW <= at:
            writes.popleft()
        if len(writes) >= CARD_WRITE_LIMIT:
            wait = (writes[0] + CARD_WRITE_WINDOW - at).total_seconds()
            raise SimError(
                429, 1007, "contact card write limit: 3 per 10 minutes", retry_after=wait
            )
        writes.append(at)

    def _card_write_fault(self, card: Card | None) -> None:
        """Consume the one-shot card faults; 4004 leaves the card stored but inactive."""
        if self.settings.card_4004_next > 0:
            self.settings.card_4004_next -= 1
            if card is not None:
                card.active_at = None
                self.cards[card.phone_number] = card
            raise SimError(
                503, 4004, "upstream card write was rate-limited; card left inactive", fault="4004"
            )
        if self.settings.card_2022_next > 0:
            self.settings.card_2022_next -= 1
            raise SimError(500, 2022, "contact card setup did not complete", fault="2022")

    def create_card(self, body: dict[str, Any], trace_id: str = "") -> Card:
        number = self._account_number(body.get("phone_number"))
        first_name = body.get("first_name")
        if not isinstance(first_name, str) or not first_name.strip():
            raise SimError(400, 1003, "first_name is required")
        last_name = _optional_str(body, "last_name")
        image_url = _optional_str(body, "image_url")
        at = clock.now()
        self._spend_card_write(number, at)
        existing = self.cards.get(number)
        if existing is not None and existing.is_active(at):
            raise SimError(409, 2014, f"an active contact card already exists for {number}")
        # A pending card is set up again with this body (setup continues).
        card = Card(number, first_name, last_name, image_url, None)
        self._card_write_fault(card)
        card.active_at = at + timedelta(seconds=self.settings.activation_delay)
        self.cards[number] = card
        self.emit("contact_card.created", number, card_event_data(card, at, "created"), trace_id)
        return card

    def update_card(self, number: Any, body: dict[str, Any], trace_id: str = "") -> Card:
        number = self._account_number(number)
        changes: dict[str, str | None] = {}
        if "first_name" in body:
            first_name = body["first_name"]
            if not isinstance(first_name, str) or not first_name.strip():
                raise SimError(400, 1003, "first_name cannot be empty")
            changes["first_name"] = first_name
        for name in ("last_name", "image_url"):
            if name in body:
                changes[name] = _optional_str(body, name)
        at = clock.now()
        self._spend_card_write(number, at)
        card = self.cards.get(number)
        if card is None or not card.is_active(at):
            # PATCH fetches the current active card and merges the fields given.
            raise SimError(404, 2012, f"no active contact card for {number}")
        self._card_write_fault(card)
        change = {
            name: {"from": getattr(card, name), "to": value}
            for name, value in changes.items()
            if getattr(card, name) != value
        }
        for name, value in changes.items():
            setattr(card, name, value)
        # Any write re-applies the card to the line: inactive until the delay has passed.
        card.active_at = at + timedelta(seconds=self.settings.activation_delay)
        data = card_event_data(card, at, "updated", change)
        self.emit("contact_card.updated", number, data, trace_id)
        return card

    def get_cards(self, number: str | None) -> list[Card]:
        """The active cards ("retrieve the active card(s)"): a pending card is not listed."""
        at = clock.now()
        if number is None:
            return [card for card in self.cards.values() if card.is_active(at)]
        number = self._account_number(number)
        card = self.cards.get(number)
        if card is None or not card.is_active(at):
            raise SimError(404, 2012, f"no active contact card for {number}")
        return [card]

    def record_card_call(
        self, method: str, number: str | None, status: int, code: int | None
    ) -> None:
        """Every card request and its answer, for tests that count writes."""
        self.card_calls.append(
            {
                "method": method,
                "phone_number": number,
                "at": iso(clock.now()),
                "status": status,
                "code": code,
            }
        )

    def delete_card(self, number: str, trace_id: str = "") -> bool:
        card = self.cards.pop(number, None)
        if card is None:
            return False
        data = card_event_data(card, clock.now(), "deleted")
        self.emit("contact_card.deleted", number, data, trace_id)
        return True

    # -- chats and messages ----------------------------------------------------------------

    def health(self, chat: Chat) -> dict[str, Any]:
        updated = chat.created_at
        status = "HEALTHY"
        if not chat.is_group:
            handle = chat.recipients[0].handle
            if self.opted_out.get(handle, "") == chat.id:
                status = "OPTED_OUT"
            changed = self._health_changed.get(handle)
            if changed is not None and changed > updated:
                updated = changed
        return {
            "status": status,
            "updated_at": iso(updated),
            "doc_url": HEALTH_DOC_URL + status.lower().replace("_", "-"),
        }

    def is_opted_out(self, chat: Chat) -> bool:
        """Group chats are never blocked; a 1:1 chat is, on every line, once its recipient
        opted out anywhere."""
        return not chat.is_group and chat.recipients[0].handle in self.opted_out

    def _check_sending_line(self, number: str) -> None:
        """A line may send or share: it is the account's (2005) and not flagged (2027)."""
        self.check_line(number)
        if number in self.ineligible_lines:
            raise SimError(403, 2027, f"{number} is not eligible to send right now")

    def _check_recipient(self, handle: str) -> None:
        """A 1:1 send or share reaches a recipient neither blocked (2026) nor opted out (2024)."""
        if handle in self.blocked:
            raise SimError(403, 2026, "the recipient is blocked by this account")
        if handle in self.opted_out:
            raise SimError(403, 2024, "the recipient has opted out")

    def block(self, handle: str, reason: str | None = None) -> None:
        self.blocked.setdefault(handle, (clock.now(), reason))

    def unblock(self, handle: str) -> bool:
        return self.blocked.pop(handle, None) is not None

    def blocked_handles(self) -> list[dict[str, Any]]:
        """``GET /v3/blocked_handles``: newest first."""
        entries = sorted(self.blocked.items(), key=lambda item: item[1][0], reverse=True)
        return [
            {"handle": handle, "blocked_at": iso(at), "reason": reason}
            for handle, (at, reason) in entries
        ]

    def set_line_status(self, number: str, status: str, reputation: str) -> dict[str, Any]:
        """Flag (or restore) a line; emits ``phone_number.status_updated`` when it changes."""
        number = check_phone(number)
        if status not in ("ACTIVE", "FLAGGED"):
            raise SimError(400, 1005, "status must be ACTIVE or FLAGGED")
        if reputation not in ("HEALTHY", "AT_RISK", "CRITICAL"):
            raise SimError(400, 1005, "reputation must be HEALTHY, AT_RISK or CRITICAL")
        previous_reputation = self.ineligible_lines.get(number, "HEALTHY")
        previous_status = "FLAGGED" if number in self.ineligible_lines else "ACTIVE"
        if status == "FLAGGED" or reputation == "CRITICAL":
            self.ineligible_lines[number] = reputation
        else:
            self.ineligible_lines.pop(number, None)
        data = {
            "phone_number": number,
            "previous_status": previous_status,
            "new_status": status,
            "previous_reputation": previous_reputation,
            "new_reputation": reputation,
            "changed_at": iso(clock.now()),
        }
        self.emit("phone_number.status_updated", number, data, "")
        return data

    def chat_json(self, chat: Chat) -> dict[str, Any]:
        return chat.to_json(self.health(chat))

    def get_chat(self, chat_id: str) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            raise SimError(404, 2001, f"chat {chat_id} not found")
        return chat

    def _new_chat(self, number: str, to: Sequence[str], service: str, at: datetime) -> Chat:
        me = Handle(self.new_id(), number, service, True, at)
        recipients = [Handle(self.new_id(), h, service, False, at) for h in to]
        chat = Chat(self.new_id(), number, me, recipients, service, len(to) > 1, at, at)
        self.chats[chat.id] = chat
        self.chat_order.append(chat)
        self.chats_by_line.setdefault(number, []).append(chat)
        self._chat_keys[(number, service, tuple(sorted(to)))] = chat
        return chat

    def _add_message(
        self, chat: Chat, sender: Handle, parts: list[dict[str, Any]], at: datetime
    ) -> Message:
        message = Message(self.new_id(), chat.id, sender, chat.service, parts, at)
        chat.messages.append(message)
        if sender.is_me:
            chat.has_outbound = True
        if at > chat.updated_at:
            chat.updated_at = at
        self.message_count += 1
        return message

    def create_chat(self, body: dict[str, Any], trace_id: str = "") -> tuple[Chat, Message]:
        number = check_phone(body.get("from"), "from")
        to = body.get("to")
        if not isinstance(to, list) or not to:
            raise SimError(400, 1003, "to must be a non-empty list of handles")
        for handle in to:
            if not isinstance(handle, str) or not (E164.match(handle) or _EMAIL.match(handle)):
                raise SimError(400, 1002, f"{handle!r} is not an E.164 number or an email")
        if len(set(to)) != len(to):
            raise SimError(400, 1001, "to lists a handle twice")
        parts = check_parts(body.get("message"))
        service = body.get("service", "iMessage")
        if service not in SERVICES:
            raise SimError(400, 1005, f"service must be one of {', '.join(SERVICES)}")
        self._check_sending_line(number)
        if len(to) == 1:
            self._check_recipient(to[0])
        at = clock.now()
        chat = self._chat_keys.get((number, service, tuple(sorted(to))))
        created = chat is None
        if chat is None:
            chat = self._new_chat(number, to, service, at)
        message = self._add_message(chat, chat.me, parts, at)
        if created and self.sink is not None:
            self.emit("chat.created", chat.id, self.chat_json(chat), trace_id)
        self._emit_message(chat, message, trace_id)
        return chat, message

    def send_message(self, chat_id: str, body: dict[str, Any], trace_id: str = "") -> Message:
        chat = self.get_chat(chat_id)
        parts = check_parts(body.get("message"))
        self._check_sending_line(chat.from_number)
        if not chat.is_group:
            self._check_recipient(chat.recipients[0].handle)
        message = self._add_message(chat, chat.me, parts, clock.now())
        self._emit_message(chat, message, trace_id)
        return message

    def receive_message(
        self, chat_id: str, text: str, sender: str | None = None, trace_id: str = ""
    ) -> Message | None:
        """A recipient writes in: STOP and its synonyms opt them out everywhere, anything else
        opts them back in everywhere. A blocked handle's message is dropped (None)."""
        chat = self.get_chat(chat_id)
        if sender is None:
            handle = chat.recipients[0]
        else:
            found = [h for h in chat.recipients if h.handle == sender]
            if not found:
                raise SimError(400, 1001, f"{sender} is not a recipient of chat {chat_id}")
            handle = found[0]
        if handle.handle in self.blocked:
            return None  # dropped before webhooks
        at = clock.now()
        who = handle.handle
        stop = is_opt_out_keyword(text) and not chat.is_group
        if stop:
            self.opted_out[who] = chat.id
            self._health_changed[who] = at
        elif who in self.opted_out:
            del self.opted_out[who]
            self._health_changed[who] = at
        message = self._add_message(chat, handle, [{"type": "text", "value": text}], at)
        self._emit_message(chat, message, trace_id)
        return message

    def _emit_message(self, chat: Chat, message: Message, trace_id: str) -> None:
        if self.sink is None:
            return
        health = self.health(chat)
        sent = iso(message.created_at)

        def data(delivered: bool) -> dict[str, Any]:
            return {
                "id": message.id,
                "chat_id": chat.id,
                "direction": "outbound" if message.is_from_me else "inbound",
                "service": chat.service,
                "sent_at": sent,
                "delivered_at": sent if delivered else None,
                "read_at": None,
                "chat": {
                    "id": chat.id,
                    "is_group": chat.is_group,
                    "owner_handle": chat.me.to_json(),
                    "health_status": health,
                },
                "sender_handle": message.sender.to_json(),
                "parts": message.parts,
            }

        if message.is_from_me:
            self.emit("message.sent", chat.id, data(False), trace_id)
            self.emit("message.delivered", chat.id, data(True), trace_id)
        else:
            self.emit("message.received", chat.id, data(True), trace_id)

    def fail_message(self, message_id: str, code: int = 4001, trace_id: str = "") -> Message:
        """An outbound message turns out undeliverable: message.failed, and it stops counting
        as the chat's outbound activity."""
        for chat in self.chat_order:
            for message in chat.messages:
                if message.id == message_id:
                    break
            else:
                continue
            if not message.is_from_me:
                raise SimError(400, 1001, f"message {message_id} is not an outbound message")
            message.status = "failed"
            chat.has_outbound = any(m.is_from_me and m.status != "failed" for m in chat.messages)
            data = {
                "code": code,
                "failed_at": iso(clock.now()),
                "chat_id": chat.id,
                "message_id": message.id,
                "service": message.service,
                "reason": "the message could not be delivered",
            }
            self.emit("message.failed", chat.id, data, trace_id)
            return message
        raise SimError(404, 1001, f"message {message_id} not found")

    def list_chats(self, number: str | None, limit: int, cursor: str | None) -> Page:
        if number is None:
            chats: list[Chat] = self.chat_order
        else:
            number = self._account_number(number, "from")
            chats = self.chats_by_line.get(number, [])
        return _page(chats, "chats", limit, cursor)

    def list_messages(self, chat_id: str, limit: int, cursor: str | None) -> Page:
        return _page(self.get_chat(chat_id).messages, "messages", limit, cursor)

    def seed(
        self,
        number: str,
        count: int,
        *,
        service: str = "iMessage",
        is_group: bool = False,
        outbound: bool = True,
        start: datetime | None = None,
        spacing: timedelta = timedelta(seconds=1),
        webhooks: bool = False,
    ) -> list[str]:
        """Create ``count`` chats at once, each with one outbound message when asked."""
        sink = self.sink
        if not webhooks:
            self.sink = None
        try:
            ids = []
            now = clock.now()
            text = [{"type": "text", "value": "Hello from the simulator"}]
            for i in range(count):
                at = now if start is None else start + spacing * i
                size = 2 if is_group else 1
                to = [f"+1555{self._seeded + k:07d}" for k in range(size)]
                self._seeded += size
                chat = self._new_chat(number, to, service, at)
                if self.sink is not None:
                    self.emit("chat.created", chat.id, self.chat_json(chat), "")
                if outbound:
                    message = self._add_message(chat, chat.me, text, at)
                    self._emit_message(chat, message, "")
                ids.append(chat.id)
            return ids
        finally:
            self.sink = sink

    # -- sharing ---------------------------------------------------------------------------

    def share_fault(self) -> ShareFault | None:
        """Draw the injected fault for one share call, before any rule is checked."""
        knobs = self.settings
        if self.roll(knobs.reset_rate):
            return "reset"
        if self.roll(knobs.share_fault_rate):
            raise SimError(500, 3006, "internal error", fault="share_5xx")
        if self.roll(knobs.share_429_rate):
            raise SimError(
                429, 1007, "rate limited", retry_after=knobs.retry_after, fault="share_429"
            )
        if self.roll(knobs.timeout_rate):
            return "timeout"
        return None

    def share(self, chat_id: str) -> Share:
        """Apply one share call's rules; raise SimError with the documented code on refusal."""
        chat = self.get_chat(chat_id)
        self._check_sending_line(chat.from_number)
        at = clock.now()
        card = self.cards.get(chat.from_number)
        if card is None or not card.is_active(at):
            raise SimError(404, 2012, f"no active contact card for {chat.from_number}")
        if not chat.is_group:
            self._check_recipient(chat.recipients[0].handle)
        if not chat.has_outbound:
            raise SimError(400, 1004, "the chat has no outbound message yet")
        if chat.last_share_at is not None and at < chat.last_share_at + SHARE_INTERVAL:
            wait = (chat.last_share_at + SHARE_INTERVAL - at).total_seconds()
            raise SimError(429, 1007, "share limit: 1 per chat per 5 minutes", retry_after=wait)
        chat.last_share_at = at
        share = Share(chat.id, chat.from_number, chat.service, at)
        self.shares.append(share)
        self.shares_by_chat.setdefault(chat.id, []).append(share)
        return share

    def record_call(
        self,
        chat_id: str,
        status: int | None,
        code: int | None,
        trace_id: str,
        *,
        applied: bool,
        fault: str | None = None,
    ) -> None:
        call = ShareCall(chat_id, clock.now(), status, code, trace_id, applied, fault)
        self.calls.append(call)
        self.calls_by_chat.setdefault(chat_id, []).append(call)

    def counts(self) -> dict[str, int]:
        return {
            "cards": len(self.cards),
            "active_cards": sum(1 for c in self.cards.values() if c.is_active(clock.now())),
            "chats": len(self.chats),
            "messages": self.message_count,
            "shares": len(self.shares),
            "share_calls": len(self.calls),
            "opted_out": len(self.opted_out),
            "blocked": len(self.blocked),
            "ineligible_lines": len(self.ineligible_lines),
        }


def card_event_data(
    card: Card, at: datetime, verb: str, change: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``data`` of a ``contact_card.*`` account event, as Linq sends it.

    Fields that do not apply are absent (``null`` only inside ``change``); the card's id is
    derived from its number, as one line has one card.
    """
    shown: dict[str, Any] = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"linq-sim:contact-card:{card.phone_number}")),
        "first_name": card.first_name,
    }
    for name in ("last_name", "image_url"):
        if getattr(card, name) is not None:
            shown[name] = getattr(card, name)
    data: dict[str, Any] = {
        "actor": {"type": "api"},
        "origin": "api",
        "occurred_at": iso(at),
        "summary": f"Contact card {verb}",
        "phone_number": card.phone_number,
        "contact_card": shown,
    }
    if change:
        data["change"] = change
    return data


def is_opt_out_keyword(text: str) -> bool:
    """The whole trimmed message is one of Linq's opt-out keywords."""
    word = text.strip().upper()
    return word in OPT_OUT_WORDS or _OPT_OUT_PHRASE.fullmatch(word) is not None


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise SimError(400, 1001, f"{name} must be a string or null")
    return value or None


def _page(items: Sequence[Any], kind: str, limit: int, cursor: str | None) -> Page:
    start = 0 if not cursor else _decode_cursor(kind, cursor)
    end = start + limit
    chunk = items[start:end]
    return Page(chunk, _encode_cursor(kind, end) if end < len(items) else None)
