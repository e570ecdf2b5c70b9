"""Async client of the Linq Partner API v3.

One call, one HTTP request: the client never retries (see :mod:`scheduler.linq.retry`), so a
caller always knows how many times a share may have reached Linq. Every failure is a
:class:`~scheduler.errors.LinqError`; the API token never appears in a repr, a message or a
log line.
"""

from __future__ import annotations

import json as _json
import logging
import re
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ValidationError

from scheduler import __version__
from scheduler.config import LinqConfig, Secret
from scheduler.errors import LinqAPIError, LinqError, LinqTransportError
from scheduler.linq import envelope
from scheduler.linq.transport import HttpxLane, Lane, Outgoing, PooledLane, Reply
from scheduler.linq.types import (
    BlockedHandle,
    Chat,
    ChatPage,
    ContactCard,
    CreatedWebhookSubscription,
    Message,
    MessagePage,
    ShareResult,
    WebhookSubscription,
)

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100
_REDACTED = "[redacted]"
_TOKEN_SHAPE = re.compile(r"^[\x21-\x7e]+$")
# Methods whose requests always say their body's length, empty or not (as httpx's do).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# Failures that happen before a single byte of the request leaves this process: the call
# certainly had no effect at Linq and can be repeated without risking a double share.
_NOT_SENT: tuple[type[httpx.RequestError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _segment(value: str) -> str:
    """Quote one path segment, including dot segments that URL normalization would eat."""
    if not value:
        raise ValueError("a chat id cannot be empty")
    quoted = quote(value, safe="")
    if quoted in (".", ".."):
        quoted = quoted.replace(".", "%2E")
    return quoted


def _text_message(text: str) -> dict[str, Any]:
    return {"parts": [{"type": "text", "value": text}]}


def _display_url(url: str) -> str:
    """The base URL without any userinfo, for reprs and messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


LANE_CONNECTIONS = 4


class LinqClient:
    """Thin typed wrapper over the endpoints in the Linq API notes."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        timeout: float = 10,
        connect_timeout: float = 5,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = f"share-scheduler/{__version__}",
    ) -> None:
        token = api_key.reveal()
        if not token:
            raise ValueError(f"the Linq API token from {api_key.source} is empty")
        # A space or newline in the token would make the HTTP layer raise an error that quotes
        # the header value, token included; refuse it here with a message that does not.
        if not _TOKEN_SHAPE.match(token):
            raise ValueError(
                f"the Linq API token from {api_key.source} contains whitespace or "
                "non-ASCII characters"
            )
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        # The Date header of the last answer: the server's clock, for `doctor`'s skew check.
        self.server_date: str | None = None
        # Called with every failed request (each try), e.g. to count API errors by code.
        self.on_error: Callable[[LinqError], None] | None = None
        # httpcore's pool scans its connections on every request, at a cost that grows with the
        # square of their number; a few small pools ("lanes") keep that scan short.
        lanes = max(1, -(-max_connections // LANE_CONNECTIONS)) if transport is None else 1
        per_lane = -(-max_connections // lanes)
        # One TLS context for every lane: building one costs tens of milliseconds.
        tls = httpx.create_ssl_context()
        # Requests go straight to the connection pools. httpx.AsyncClient's layers (cookies,
        # auth flows, redirects, URL merging) have nothing to do here and cost about a quarter
        # of each call's CPU, which is most of what a pass spends per chat. The pools run on
        # asyncio's streams, not AnyIO's (see scheduler.linq.transport).
        self._lanes: list[Lane] = (
            [HttpxLane(self._base_url, transport)]
            if transport is not None
            else [
                PooledLane(self._base_url, ssl_context=tls, max_connections=per_lane)
                for _ in range(lanes)
            ]
        )
        self._headers = [
            (b"User-Agent", user_agent.encode("ascii")),
            (b"Accept", b"application/json"),
        ]
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout).as_dict()
        self._busy = [0] * len(self._lanes)
        self._closed = False

    @classmethod
    def from_config(
        cls,
        cfg: LinqConfig,
        api_key: Secret,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Self:
        return cls(
            cfg.base_url,
            api_key,
            timeout=cfg.timeout.total_seconds(),
            connect_timeout=cfg.connect_timeout.total_seconds(),
            max_connections=cfg.max_connections,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"LinqClient(base_url={_display_url(self._base_url)!r})"

    @property
    def base_url(self) -> str:
        return _display_url(self._base_url)

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for lane in self._lanes:
            await lane.aclose()

    # Contact cards

    async def get_contact_cards(self, phone_number: str | None = None) -> list[ContactCard]:
        """All cards of the account, or the one of ``phone_number`` (as a one-item list)."""
        params = {"phone_number": phone_number} if phone_number is not None else None
        data = await self._json("GET", "/v3/contact_card", params=params)
        if isinstance(data, dict) and "contact_cards" in data:
            items = data["contact_cards"]
        elif isinstance(data, dict) and "phone_number" in data:
            items = [data]
        else:
            items = data
        if items is None:
            return []
        if not isinstance(items, list):
            raise self._unexpected("GET", "/v3/contact_card", 200, "expected a list of cards")
        return [self._model(ContactCard, item, "GET", "/v3/contact_card") for item in items]

    async def create_contact_card(
        self,
        phone_number: str,
        first_name: str,
        last_name: str | None = None,
        image_url: str | None = None,
    ) -> ContactCard:
        body = _without_none(
            {
                "phone_number": phone_number,
                "first_name": first_name,
                "last_name": last_name,
                "image_url": image_url,
            }
        )
        data = await self._json("POST", "/v3/contact_card", json=body)
        return self._model(ContactCard, _unwrap(data, "contact_card"), "POST", "/v3/contact_card")

    async def update_contact_card(
        self,
        phone_number: str,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        image_url: str | None = None,
    ) -> ContactCard:
        """PATCH only the given fields: an omitted ``image_url`` is not re-uploaded."""
        body = _without_none(
            {"first_name": first_name, "last_name": last_name, "image_url": image_url}
        )
        if not body:
            # Each write spends one of the number's 3 writes per 10 minutes.
            raise ValueError("update_contact_card needs at least one field to change")
        data = await self._json(
            "PATCH", "/v3/contact_card", params={"phone_number": phone_number}, json=body
        )
        return self._model(ContactCard, _unwrap(data, "contact_card"), "PATCH", "/v3/contact_card")

    # Blocked handles

    async def get_blocked_handles(self) -> list[BlockedHandle]:
        """Every handle our account has blocked (one list, newest first)."""
        data = await self._json("GET", "/v3/blocked_handles")
        items = data.get("blocked_handles") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise self._unexpected("GET", "/v3/blocked_handles", 200, "expected a list")
        return [self._model(BlockedHandle, i, "GET", "/v3/blocked_handles") for i in items]

    # Sharing

    async def share_contact_card(self, chat_id: str) -> ShareResult:
        path = f"/v3/chats/{_segment(chat_id)}/share_contact_card"
        response, latency_ms = await self._send("POST", path)
        trace_id = envelope.trace_id_from_headers(response.headers)
        if trace_id is None and response.content.strip():
            data = _loads(response)
            if isinstance(data, dict) and isinstance(data.get("trace_id"), str):
                trace_id = data["trace_id"]
        return ShareResult(
            http_status=response.status_code, trace_id=trace_id, latency_ms=latency_ms
        )

    # Chats and messages

    async def list_chats(
        self,
        *,
        from_number: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        cursor: str | None = None,
    ) -> ChatPage:
        params: dict[str, Any] = {"limit": _check_limit(limit)}
        if from_number is not None:
            params["from"] = from_number
        if cursor is not None:
            params["cursor"] = cursor
        data = await self._json("GET", "/v3/chats", params=params)
        return self._model(ChatPage, data, "GET", "/v3/chats")

    async def list_messages(
        self, chat_id: str, *, limit: int = MAX_PAGE_SIZE, cursor: str | None = None
    ) -> MessagePage:
        path = f"/v3/chats/{_segment(chat_id)}/messages"
        params: dict[str, Any] = {"limit": _check_limit(limit)}
        if cursor is not None:
            params["cursor"] = cursor
        data = await self._json("GET", path, params=params)
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            # Items listed under a chat may leave out their chat id; it is the one asked for.
            data = {
                **data,
                "messages": [_with_chat_id(item, chat_id) for item in data["messages"]],
            }
        return self._model(MessagePage, data, "GET", path)

    async def create_chat(
        self,
        from_number: str,
        to: list[str],
        text: str,
        *,
        service: str | None = None,
    ) -> Chat:
        """Open a chat with its first message. ``service`` is understood by the simulator only."""
        body: dict[str, Any] = {"from": from_number, "to": list(to), "message": _text_message(text)}
        if service is not None:
            body["service"] = service
        data = await self._json("POST", "/v3/chats", json=body)
        return self._model(Chat, _created_chat(_unwrap(data, "chat")), "POST", "/v3/chats")

    async def send_message(self, chat_id: str, text: str) -> Message:
        path = f"/v3/chats/{_segment(chat_id)}/messages"
        data = await self._json("POST", path, json={"message": _text_message(text)})
        return self._model(Message, _with_chat_id(_unwrap(data, "message"), chat_id), "POST", path)

    # Webhook subscriptions

    async def list_webhook_subscriptions(self) -> list[WebhookSubscription]:
        path = "/v3/webhook-subscriptions"
        data = await self._json("GET", path)
        items = data.get("subscriptions") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._unexpected("GET", path, 200, "expected {subscriptions: [...]}")
        return [self._model(WebhookSubscription, item, "GET", path) for item in items]

    async def create_webhook_subscription(
        self, target_url: str, events: list[str], phone_numbers: list[str] | None = None
    ) -> CreatedWebhookSubscription:
        """Create a subscription; its signing secret is in the answer, and only there."""
        path = "/v3/webhook-subscriptions"
        body: dict[str, Any] = {"target_url": target_url, "subscribed_events": list(events)}
        if phone_numbers:
            body["phone_numbers"] = list(phone_numbers)
        data = await self._json("POST", path, json=body)
        return self._model(CreatedWebhookSubscription, data, "POST", path)

    async def update_webhook_subscription(
        self,
        subscription_id: str,
        *,
        events: list[str] | None = None,
        phone_numbers: list[str] | None = None,
        is_active: bool | None = None,
    ) -> WebhookSubscription:
        """A partial update (PUT, as Linq's SDK sends it); ``phone_numbers=[]`` clears the
        filter (every line), None leaves it."""
        path = f"/v3/webhook-subscriptions/{_segment(subscription_id)}"
        body: dict[str, Any] = {}
        if events is not None:
            body["subscribed_events"] = list(events)
        if phone_numbers is not None:
            body["phone_numbers"] = list(phone_numbers)
        if is_active is not None:
            body["is_active"] = is_active
        if not body:
            raise ValueError("update_webhook_subscription needs at least one field to change")
        data = await self._json("PUT", path, json=body)
        return self._model(WebhookSubscription, data, "PUT", path)

    # Plumbing

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> tuple[Reply, float]:
        """One request; non-2xx raise the typed error. Returns the response and latency (ms)."""
        started = time.perf_counter()
        leaky: LinqTransportError | None = None
        try:
            response = await self._request(method, path, params=params, json=json)
        except httpx.RequestError as exc:
            error = self._transport_error(method, path, exc)
            self._observe_error(error)
            if self._api_key.reveal() not in str(exc):
                raise error from exc
            leaky = error
        if leaky is not None:
            # Raised outside the except block so that the httpx error quoting the token is
            # neither the cause nor the context of what callers log.
            raise leaky
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.server_date = response.headers.get("date")
        log.debug(
            "linq %s %s -> %s in %.1f ms",
            method,
            path,
            response.status_code,
            latency_ms,
        )
        if not 200 <= response.status_code <= 299:
            body = self._scrub_bytes(response.content)
            api_error = envelope.parse_error(response.status_code, body, response.headers)
            self._observe_error(api_error)
            raise api_error
        return response, latency_ms

    async def _request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None, json: Any
    ) -> Reply:
        if self._closed:
            raise RuntimeError("the Linq client is closed")
        target = path if not params else f"{path}?{httpx.QueryParams(params)}"
        # The token is added per request, so it never sits in a long-lived headers object.
        token = self._api_key.reveal().encode()
        headers = [*self._headers, (b"Authorization", b"Bearer " + token)]
        body = b""
        if json is not None:
            # As httpx encodes a JSON body.
            body = _json.dumps(
                json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            headers.append((b"Content-Type", b"application/json"))
        if body or method in _BODY_METHODS:
            headers.append((b"Content-Length", str(len(body)).encode()))
        request = Outgoing(method, target, headers, body, self._timeout)
        lane = self._busy.index(min(self._busy))
        self._busy[lane] += 1
        try:
            return await self._lanes[lane].send(request)
        finally:
            self._busy[lane] -= 1

    def _observe_error(self, error: LinqError) -> None:
        if self.on_error is not None:
            self.on_error(error)

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        response, _ = await self._send(method, path, params=params, json=json)
        data = _loads(response)
        if data is _NOT_JSON:
            raise self._unexpected(method, path, response.status_code, "the body is not JSON")
        return data

    def _model(self, model: type[_ModelT], data: Any, method: str, path: str) -> _ModelT:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors(include_url=False, include_input=False)[:3]:
                where = ".".join(str(part) for part in err["loc"]) or "body"
                problems.append(f"{where}: {err['msg']}")
            more = exc.error_count() - len(problems)
            summary = "; ".join(problems) + (f" (+{more} more)" if more > 0 else "")
            raise self._unexpected(
                method, path, 200, f"does not match the {model.__name__} schema: {summary}"
            ) from None

    def _unexpected(self, method: str, path: str, status: int, what: str) -> LinqAPIError:
        return LinqAPIError(
            self._scrub(envelope.clip(f"unexpected response to {method} {path}: {what}", 300)),
            status=status,
        )

    def _transport_error(
        self, method: str, path: str, exc: httpx.RequestError
    ) -> LinqTransportError:
        sent = not isinstance(exc, _NOT_SENT)
        detail = envelope.clip(str(exc)) if str(exc).strip() else ""
        message = f"{method} {path}: {type(exc).__name__}" + (f": {detail}" if detail else "")
        if sent:
            message += " (the request may have reached Linq)"
        return LinqTransportError(self._scrub(message), sent=sent)

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key.reveal(), _REDACTED)

    def _scrub_bytes(self, body: bytes) -> bytes:
        # A misbehaving proxy may echo request headers back in its error page.
        return body.replace(self._api_key.reveal().encode(), _REDACTED.encode())


_NOT_JSON = object()


def _loads(response: Reply) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def _without_none(fields: Mapping[str, str | None]) -> dict[str, str]:
    """The fields given a value: one left out of a card write keeps its value at Linq."""
    return {name: value for name, value in fields.items() if value is not None}


def _unwrap(data: Any, key: str) -> Any:
    if isinstance(data, dict) and isinstance(data.get(key), dict):
        return data[key]
    return data


def _created_chat(chat: Any) -> Any:
    """A created chat (``ChatCreateResponse.chat``) carries no ``created_at``: its first
    message's time stands in for it."""
    if isinstance(chat, dict) and chat.get("created_at") is None:
        message = chat.get("message")
        at = message.get("created_at") if isinstance(message, dict) else None
        if at is not None:
            return {**chat, "created_at": at}
    return chat


def _with_chat_id(item: Any, chat_id: str) -> Any:
    if isinstance(item, dict) and item.get("chat_id") is None:
        return {**item, "chat_id": chat_id}
    return item


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    return limit
