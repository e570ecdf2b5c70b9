from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from scheduler import __version__
from scheduler.config import LinqConfig, Secret
from scheduler.errors import (
    AccessDenied,
    BadRequest,
    CardExists,
    CardNotActive,
    CardSetupIncomplete,
    CardWriteThrottled,
    ChatNotFound,
    LinqAPIError,
    LinqTransportError,
    OptedOut,
    RateLimited,
    ServerError,
    Unauthorized,
)
from scheduler.linq import LinqClient

TOKEN = "tok_live_5ecr3t_abcdef0123456789"
BASE = "https://api.linq.test/api/partner"
LINE = "+14155550100"
CUSTOMER = "+447700900123"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a queue and keeps every request."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)


def make_client(handler: Handler, *, base_url: str = BASE) -> LinqClient:
    return LinqClient(
        base_url, Secret(TOKEN, "LINQ_API_KEY"), transport=httpx.MockTransport(handler)
    )


def card(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "phone_number": LINE,
        "first_name": "Acme",
        "last_name": None,
        "image_url": None,
        "is_active": True,
    }
    return {**data, **overrides}


def chat(chat_id: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": chat_id,
        "created_at": "2026-03-01T10:00:00Z",
        "updated_at": "2026-03-01T11:00:00+02:00",
        "is_group": False,
        "service": "iMessage",
        "handles": [
            {
                "id": "h1",
                "handle": LINE,
                "service": "iMessage",
                "is_me": True,
                "joined_at": "2026-03-01T10:00:00Z",
            },
            {
                "id": "h2",
                "handle": CUSTOMER,
                "service": "iMessage",
                "is_me": False,
                "joined_at": "2026-03-01T10:00:00",
                "left_at": None,
                "status": "active",
            },
        ],
        "health_status": {"status": "HEALTHY", "updated_at": "2026-03-01T10:00:00Z"},
        "some_future_field": {"ignored": True},
    }
    return {**data, **overrides}


def message(message_id: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": message_id,
        "chat_id": "chat-1",
        "is_from_me": True,
        "sent_at": "2026-03-01T10:00:01Z",
        "created_at": "2026-03-01T10:00:00Z",
        "delivery_status": "delivered",
        "service": "iMessage",
        "from": LINE,
    }
    return {**data, **overrides}


def error_response(status: int, code: int, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {
        "success": False,
        "error": {"status": status, "code": code, "message": f"failure {code}", **extra},
        "trace_id": f"trace-{code}",
    }
    return httpx.Response(status, json=body, headers=headers)


# Requests


async def test_sends_bearer_token_user_agent_and_joins_base_path() -> None:
    rec = Recorder(httpx.Response(200, json={"contact_cards": []}))
    async with make_client(rec) as client:
        assert await client.get_contact_cards() == []
    assert rec.last.headers["Authorization"] == f"Bearer {TOKEN}"
    assert rec.last.headers["User-Agent"] == f"share-scheduler/{__version__}"
    assert rec.last.url.path == "/api/partner/v3/contact_card"
    assert rec.last.url.params.get("phone_number") is None


async def test_get_contact_cards_for_one_number_encodes_the_plus() -> None:
    rec = Recorder(httpx.Response(200, json={"contact_cards": [card()]}))
    async with make_client(rec) as client:
        cards = await client.get_contact_cards(LINE)
    assert b"phone_number=%2B14155550100" in rec.last.url.query
    assert [c.phone_number for c in cards] == [LINE]
    assert cards[0].is_active is True
    assert cards[0].last_name is None


async def test_get_contact_cards_accepts_a_bare_card_object() -> None:
    rec = Recorder(httpx.Response(200, json=card(is_active=None)))
    async with make_client(rec) as client:
        cards = await client.get_contact_cards(LINE)
    assert len(cards) == 1
    assert cards[0].is_active is False


async def test_create_contact_card_omits_fields_not_given() -> None:
    rec = Recorder(httpx.Response(200, json=card(is_active=False)))
    async with make_client(rec) as client:
        created = await client.create_contact_card(LINE, "Acme")
    assert rec.last.method == "POST"
    assert rec.last_json() == {"phone_number": LINE, "first_name": "Acme"}
    assert created.is_active is False


async def test_create_contact_card_sends_optional_fields_when_given() -> None:
    rec = Recorder(httpx.Response(200, json=card()))
    async with make_client(rec) as client:
        await client.create_contact_card(LINE, "Acme", "Support", "https://img.test/a.png")
    assert rec.last_json() == {
        "phone_number": LINE,
        "first_name": "Acme",
        "last_name": "Support",
        "image_url": "https://img.test/a.png",
    }


async def test_update_contact_card_patches_only_given_fields() -> None:
    rec = Recorder(httpx.Response(200, json=card(last_name="Billing")))
    async with make_client(rec) as client:
        updated = await client.update_contact_card(LINE, last_name="Billing")
    assert rec.last.method == "PATCH"
    assert rec.last.url.path == "/api/partner/v3/contact_card"
    assert rec.last.url.params["phone_number"] == LINE
    assert rec.last_json() == {"last_name": "Billing"}
    assert updated.last_name == "Billing"


async def test_update_contact_card_without_fields_sends_nothing() -> None:
    rec = Recorder()
    async with make_client(rec) as client:
        with pytest.raises(ValueError, match="at least one field"):
            await client.update_contact_card(LINE)
    assert rec.requests == []


async def test_share_contact_card_returns_status_trace_and_latency() -> None:
    rec = Recorder(httpx.Response(204, headers={"X-Trace-Id": "tr-share"}))
    async with make_client(rec) as client:
        result = await client.share_contact_card("chat-1")
    assert rec.last.method == "POST"
    assert rec.last.url.path == "/api/partner/v3/chats/chat-1/share_contact_card"
    assert rec.last.content == b""
    assert result.http_status == 204
    assert result.trace_id == "tr-share"
    assert result.latency_ms >= 0.0


async def test_share_contact_card_reads_trace_id_from_a_json_body() -> None:
    rec = Recorder(httpx.Response(200, json={"success": True, "trace_id": "tr-body"}))
    async with make_client(rec) as client:
        result = await client.share_contact_card("chat-1")
    assert result.http_status == 200
    assert result.trace_id == "tr-body"


@pytest.mark.parametrize(
    ("chat_id", "raw_path"),
    [
        ("a/b c", b"/api/partner/v3/chats/a%2Fb%20c/share_contact_card"),
        ("x?y#z", b"/api/partner/v3/chats/x%3Fy%23z/share_contact_card"),
        ("..", b"/api/partner/v3/chats/%2E%2E/share_contact_card"),
    ],
)
async def test_chat_ids_are_quoted_as_one_path_segment(chat_id: str, raw_path: bytes) -> None:
    rec = Recorder(httpx.Response(204))
    async with make_client(rec) as client:
        await client.share_contact_card(chat_id)
    assert rec.last.url.raw_path == raw_path


async def test_empty_chat_id_is_rejected() -> None:
    rec = Recorder()
    async with make_client(rec) as client:
        with pytest.raises(ValueError, match="empty"):
            await client.share_contact_card("")
    assert rec.requests == []


async def test_list_chats_query_and_parsing() -> None:
    rec = Recorder(httpx.Response(200, json={"chats": [chat("chat-1")], "next_cursor": "c2"}))
    async with make_client(rec) as client:
        page = await client.list_chats(from_number=LINE, limit=50, cursor="c1")
    params = rec.last.url.params
    assert params["from"] == LINE
    assert params["limit"] == "50"
    assert params["cursor"] == "c1"
    assert page.next_cursor == "c2"
    only = page.chats[0]
    assert only.updated_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert only.updated_at.tzinfo is UTC
    assert only.created_at.tzinfo is UTC
    assert only.our_handle == LINE
    assert [h.handle for h in only.recipients] == [CUSTOMER]
    assert only.recipients[0].joined_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert only.opted_out is False


async def test_list_chats_omits_from_and_cursor_when_not_given() -> None:
    rec = Recorder(httpx.Response(200, json={"chats": [], "next_cursor": None}))
    async with make_client(rec) as client:
        page = await client.list_chats()
    assert set(rec.last.url.params.keys()) == {"limit"}
    assert rec.last.url.params["limit"] == "100"
    assert page.chats == []
    assert page.next_cursor is None


async def test_chat_tolerates_nulls_and_reports_opt_out() -> None:
    raw = chat(
        "chat-9",
        updated_at=None,
        is_group=None,
        service=None,
        handles=None,
        health_status={"status": "OPTED_OUT", "updated_at": None},
    )
    rec = Recorder(httpx.Response(200, json={"chats": [raw], "next_cursor": ""}))
    async with make_client(rec) as client:
        page = await client.list_chats()
    parsed = page.chats[0]
    assert parsed.updated_at == parsed.created_at
    assert parsed.is_group is False
    assert parsed.handles == []
    assert parsed.our_handle is None
    assert parsed.opted_out is True
    assert page.next_cursor is None


@pytest.mark.parametrize("limit", [0, 101, -5])
async def test_list_chats_rejects_limits_outside_the_api_range(limit: int) -> None:
    rec = Recorder()
    async with make_client(rec) as client:
        with pytest.raises(ValueError, match="limit"):
            await client.list_chats(limit=limit)
    assert rec.requests == []


async def test_list_messages_pages_and_fills_missing_chat_id() -> None:
    first = message("m1")
    second = message("m2", is_from_me=None, direction="inbound")
    del second["chat_id"]
    rec = Recorder(
        httpx.Response(200, json={"messages": [first], "next_cursor": "n2"}),
        httpx.Response(200, json={"messages": [second], "next_cursor": None}),
    )
    async with make_client(rec) as client:
        pages = [await client.list_messages("chat-1", limit=1)]
        pages.append(await client.list_messages("chat-1", limit=1, cursor=pages[0].next_cursor))
    assert [r.url.path for r in rec.requests] == ["/api/partner/v3/chats/chat-1/messages"] * 2
    assert [r.url.params.get("cursor") for r in rec.requests] == [None, "n2"]
    messages = [m for page in pages for m in page.messages]
    assert [m.id for m in messages] == ["m1", "m2"]
    assert messages[1].chat_id == "chat-1"
    assert messages[0].is_from_me is True
    assert messages[1].is_from_me is False
    assert messages[0].sent_at == datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC)


async def test_create_chat_body_without_service() -> None:
    rec = Recorder(httpx.Response(201, json={"chat": chat("new-chat"), "message": {}}))
    async with make_client(rec) as client:
        created = await client.create_chat(LINE, [CUSTOMER, "+447700900456"], "hello")
    assert rec.last.url.path == "/api/partner/v3/chats"
    assert rec.last_json() == {
        "from": LINE,
        "to": [CUSTOMER, "+447700900456"],
        "message": {"parts": [{"type": "text", "value": "hello"}]},
    }
    assert created.id == "new-chat"


async def test_create_chat_includes_service_only_when_given() -> None:
    rec = Recorder(httpx.Response(200, json={"chat": chat("sms-chat", service="SMS")}))
    async with make_client(rec) as client:
        created = await client.create_chat(LINE, [CUSTOMER], "hi", service="SMS")
    assert rec.last_json()["service"] == "SMS"
    assert created.service == "SMS"


async def test_send_message_body_and_result() -> None:
    rec = Recorder(httpx.Response(200, json=message("m7", chat_id=None)))
    async with make_client(rec) as client:
        sent = await client.send_message("chat-1", "ping")
    assert rec.last.url.path == "/api/partner/v3/chats/chat-1/messages"
    assert rec.last_json() == {"message": {"parts": [{"type": "text", "value": "ping"}]}}
    assert sent.id == "m7"
    assert sent.chat_id == "chat-1"


# Errors


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, 1002, BadRequest),
        (401, 2004, Unauthorized),
        (403, 2005, AccessDenied),
        (403, 2024, OptedOut),
        (404, 2001, ChatNotFound),
        (404, 2012, CardNotActive),
        (409, 2014, CardExists),
        (500, 2022, CardSetupIncomplete),
        (500, 3006, ServerError),
        (503, 4004, CardWriteThrottled),
    ],
)
async def test_error_codes_raise_their_exception(
    status: int, code: int, cls: type[LinqAPIError]
) -> None:
    rec = Recorder(error_response(status, code))
    async with make_client(rec) as client:
        with pytest.raises(cls) as caught:
            await client.share_contact_card("chat-1")
    assert type(caught.value) is cls
    assert caught.value.status == status
    assert caught.value.code == code
    assert caught.value.trace_id == f"trace-{code}"
    assert caught.value.retry_after is None


async def test_rate_limit_carries_retry_after() -> None:
    rec = Recorder(error_response(429, 1007, retry_after=30, headers={"Retry-After": "45"}))
    async with make_client(rec) as client:
        with pytest.raises(RateLimited) as caught:
            await client.update_contact_card(LINE, first_name="Acme")
    assert caught.value.retry_after == 45.0
    assert caught.value.code == 1007


async def test_non_json_error_body_from_a_proxy() -> None:
    page = "<html><body><h1>502 Bad Gateway</h1>" + "z" * 3000 + "</body></html>"
    rec = Recorder(httpx.Response(502, text=page, headers={"Content-Type": "text/html"}))
    async with make_client(rec) as client:
        with pytest.raises(ServerError) as caught:
            await client.list_chats()
    assert caught.value.status == 502
    assert "<h1>" not in str(caught.value)
    assert len(caught.value.message) <= 200


async def test_unexpected_redirect_is_an_error_not_followed() -> None:
    rec = Recorder(httpx.Response(302, headers={"Location": "https://elsewhere.test/"}))
    async with make_client(rec) as client:
        with pytest.raises(LinqAPIError) as caught:
            await client.list_chats()
    assert caught.value.status == 302
    assert len(rec.requests) == 1


async def test_success_body_not_matching_the_schema() -> None:
    rec = Recorder(httpx.Response(200, json={"chats": [{"id": "x"}], "next_cursor": None}))
    async with make_client(rec) as client:
        with pytest.raises(LinqAPIError) as caught:
            await client.list_chats()
    text = str(caught.value)
    assert "ChatPage" in text
    assert "chats.0.created_at" in text
    assert "pydantic" not in text.lower()
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


async def test_success_body_that_is_not_json() -> None:
    rec = Recorder(httpx.Response(200, text="OK"))
    async with make_client(rec) as client:
        with pytest.raises(LinqAPIError, match="not JSON"):
            await client.get_contact_cards()


# Transport errors


@pytest.mark.parametrize(
    ("error", "sent"),
    [
        (httpx.ConnectError("connection refused"), False),
        (httpx.ConnectTimeout("connect timed out"), False),
        (httpx.PoolTimeout("no free connection"), False),
        (httpx.ReadTimeout("read timed out"), True),
        (httpx.WriteTimeout("write timed out"), True),
        (httpx.ReadError("connection reset"), True),
        (httpx.WriteError("broken pipe"), True),
        (httpx.RemoteProtocolError("server disconnected"), True),
    ],
)
async def test_transport_errors_say_whether_the_request_may_have_been_sent(
    error: httpx.RequestError, sent: bool
) -> None:
    rec = Recorder(error)
    async with make_client(rec) as client:
        with pytest.raises(LinqTransportError) as caught:
            await client.share_contact_card("chat-1")
    assert caught.value.sent is sent
    assert caught.value.__cause__ is error
    assert type(error).__name__ in str(caught.value)
    assert "/v3/chats/chat-1/share_contact_card" in str(caught.value)
    assert ("may have reached Linq" in str(caught.value)) is sent


# Secrets


def _everything_printable(exc: BaseException) -> str:
    return "\n".join(
        [repr(exc), str(exc), "".join(traceback.format_exception(exc)), repr(exc.args)]
    )


async def test_token_absent_from_reprs() -> None:
    rec = Recorder(httpx.Response(204))
    async with make_client(rec) as client:
        assert repr(client) == f"LinqClient(base_url={BASE!r})"
        assert TOKEN not in str(client)
        await client.share_contact_card("chat-1")
    assert TOKEN not in repr(rec.last)
    assert TOKEN not in repr(rec.last.headers)


async def test_token_absent_from_unauthorized_error() -> None:
    rec = Recorder(error_response(401, 2004))
    async with make_client(rec) as client:
        with pytest.raises(Unauthorized) as caught:
            await client.get_contact_cards()
    assert TOKEN not in _everything_printable(caught.value)


async def test_token_echoed_by_a_proxy_is_redacted() -> None:
    page = f"<html>Forbidden. You sent Authorization: Bearer {TOKEN}</html>"
    rec = Recorder(httpx.Response(403, text=page, headers={"Content-Type": "text/html"}))
    async with make_client(rec) as client:
        with pytest.raises(LinqAPIError) as caught:
            await client.list_chats()
    printable = _everything_printable(caught.value)
    assert TOKEN not in printable
    assert "[redacted]" in printable


async def test_token_absent_from_transport_errors_even_if_httpx_quotes_it() -> None:
    rec = Recorder(httpx.RemoteProtocolError(f"bad header Bearer {TOKEN}"))
    async with make_client(rec) as client:
        with pytest.raises(LinqTransportError) as caught:
            await client.share_contact_card("chat-1")
    assert TOKEN not in _everything_printable(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


async def test_token_absent_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    rec = Recorder(httpx.Response(204), error_response(401, 2004))
    async with make_client(rec) as client:
        await client.share_contact_card("chat-1")
        with pytest.raises(Unauthorized):
            await client.share_contact_card("chat-1")
    assert caplog.records
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("bad", ["", "two words", "line\nbreak", "naïve"])
def test_unusable_tokens_are_refused_without_quoting_them(bad: str) -> None:
    with pytest.raises(ValueError, match="LINQ_API_KEY") as caught:
        LinqClient(BASE, Secret(bad, "LINQ_API_KEY"))
    if bad:
        assert bad not in str(caught.value)


def test_repr_hides_credentials_in_the_base_url() -> None:
    client = LinqClient("https://user:pw@api.linq.test/api/partner/", Secret(TOKEN, "env"))
    assert repr(client) == "LinqClient(base_url='https://api.linq.test/api/partner')"
    assert "pw" not in client.base_url


# Construction and lifecycle


async def test_from_config_uses_configured_url_and_timeouts() -> None:
    cfg = LinqConfig(
        base_url="https://sim.test/api/partner",
        timeout=timedelta(seconds=7),
        connect_timeout=timedelta(seconds=2),
    )
    rec = Recorder(httpx.Response(200, json={"contact_cards": []}))
    client = LinqClient.from_config(cfg, Secret(TOKEN, "env"), transport=httpx.MockTransport(rec))
    async with client:
        await client.get_contact_cards()
    assert rec.last.url.host == "sim.test"
    assert rec.last.extensions["timeout"] == {
        "connect": 2.0,
        "read": 7.0,
        "write": 7.0,
        "pool": 7.0,
    }


async def test_context_manager_closes_the_client() -> None:
    client = make_client(Recorder())
    async with client as entered:
        assert entered is client
        assert client.is_closed is False
    assert client.is_closed is True
