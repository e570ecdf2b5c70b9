from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.errors import (
    AccessDenied,
    BadRequest,
    CardExists,
    CardNotActive,
    CardSetupIncomplete,
    CardWriteThrottled,
    ChatNotFound,
    LinqAPIError,
    OptedOut,
    RateLimited,
    ServerError,
    Unauthorized,
)
from scheduler.linq.envelope import MAX_MESSAGE_CHARS, parse_error, parse_retry_after

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def envelope(status: int, code: int | None, message: str = "boom", **error: Any) -> bytes:
    err: dict[str, Any] = {"status": status, "message": message, **error}
    if code is not None:
        err["code"] = code
    return json.dumps({"success": False, "error": err, "trace_id": "tr-123"}).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, 1001, BadRequest),
        (400, 1002, BadRequest),
        (400, 1003, BadRequest),
        (400, 1004, BadRequest),
        (400, 1005, BadRequest),
        (429, 1007, RateLimited),
        (404, 2001, ChatNotFound),
        (401, 2004, Unauthorized),
        (403, 2005, AccessDenied),
        (404, 2012, CardNotActive),
        (409, 2014, CardExists),
        (500, 2022, CardSetupIncomplete),
        (403, 2024, OptedOut),
        (500, 3006, ServerError),
        (502, 3001, ServerError),
        (503, 4004, CardWriteThrottled),
    ],
)
def test_documented_codes_map_to_their_type(
    status: int, code: int, cls: type[LinqAPIError]
) -> None:
    exc = parse_error(status, envelope(status, code, "it failed"), {}, now=NOW)
    assert type(exc) is cls
    assert exc.status == status
    assert exc.code == code
    assert exc.message == "it failed"
    assert exc.trace_id == "tr-123"
    assert exc.retry_after is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (409, CardExists),
        (422, BadRequest),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
    ],
)
@pytest.mark.parametrize("code", [None, 9999])
def test_missing_or_unknown_code_falls_back_to_status(
    status: int, cls: type[LinqAPIError], code: int | None
) -> None:
    exc = parse_error(status, envelope(status, code), {}, now=NOW)
    assert type(exc) is cls
    assert exc.status == status
    assert exc.code == code


@pytest.mark.parametrize("status", [403, 404, 405, 418])
def test_ambiguous_status_without_code_stays_generic(status: int) -> None:
    # A bare 404 (wrong base URL) must not read as "chat not found" and retire chats.
    exc = parse_error(status, envelope(status, None), {}, now=NOW)
    assert type(exc) is LinqAPIError
    assert exc.status == status


def test_code_wins_over_status() -> None:
    assert type(parse_error(500, envelope(500, 2022), {}, now=NOW)) is CardSetupIncomplete
    assert type(parse_error(503, envelope(503, 4004), {}, now=NOW)) is CardWriteThrottled
    assert type(parse_error(400, envelope(400, 3006), {}, now=NOW)) is ServerError


def test_code_given_as_numeric_string_is_understood() -> None:
    body = json.dumps({"error": {"code": "2012", "message": "inactive"}}).encode()
    exc = parse_error(404, body, {}, now=NOW)
    assert type(exc) is CardNotActive
    assert exc.code == 2012


def test_retry_after_from_header_only() -> None:
    exc = parse_error(429, envelope(429, 1007), {"Retry-After": "42"}, now=NOW)
    assert type(exc) is RateLimited
    assert exc.retry_after == 42.0


def test_retry_after_from_field_only() -> None:
    exc = parse_error(429, envelope(429, 1007, retry_after=30), {}, now=NOW)
    assert exc.retry_after == 30.0


@pytest.mark.parametrize(("header", "field", "expected"), [("10", 30, 30.0), ("90", 30, 90.0)])
def test_retry_after_prefers_the_larger(header: str, field: int, expected: float) -> None:
    exc = parse_error(429, envelope(429, 1007, retry_after=field), {"Retry-After": header}, now=NOW)
    assert exc.retry_after == expected


def test_retry_after_header_lookup_ignores_case_on_plain_dicts() -> None:
    exc = parse_error(429, envelope(429, 1007), {"retry-after": "7"}, now=NOW)
    assert exc.retry_after == 7.0


def test_retry_after_http_date_header() -> None:
    when = format_datetime(NOW + timedelta(seconds=120), usegmt=True)
    exc = parse_error(429, envelope(429, 1007), {"Retry-After": when}, now=NOW)
    assert exc.retry_after == 120.0


def test_unreadable_retry_after_header_falls_back_to_field() -> None:
    exc = parse_error(429, envelope(429, 1007, retry_after=15), {"Retry-After": "soon"}, now=NOW)
    assert exc.retry_after == 15.0


def test_html_body_from_a_proxy_gives_typed_clean_short_error() -> None:
    filler = "x" * 5000
    body = (
        "<html><head><style>body{color:red}</style><title>502 Bad Gateway</title></head>"
        f"<body><h1>Bad Gateway</h1><p>upstream gone {filler}</p></body></html>"
    ).encode()
    exc = parse_error(502, body, {"Content-Type": "text/html; charset=utf-8"}, now=NOW)
    assert type(exc) is ServerError
    assert exc.status == 502
    assert exc.code is None
    assert "<" not in exc.message
    assert "color:red" not in exc.message
    assert "Bad Gateway" in exc.message
    assert len(exc.message) <= MAX_MESSAGE_CHARS
    assert filler not in str(exc)


def test_plain_text_body_is_quoted_briefly() -> None:
    exc = parse_error(503, b"Service Unavailable: try later", {"Content-Type": "text/plain"})
    assert type(exc) is ServerError
    assert "try later" in exc.message
    assert "text/plain" in exc.message


def test_empty_body() -> None:
    exc = parse_error(401, b"", {}, now=NOW)
    assert type(exc) is Unauthorized
    assert exc.message == "Unauthorized (empty body)"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"just a string"', b"null", b'{"foo": 1}'])
def test_json_that_is_not_an_envelope(body: bytes) -> None:
    exc = parse_error(500, body, {}, now=NOW)
    assert type(exc) is ServerError
    assert "without an error envelope" in exc.message


def test_error_given_as_a_string() -> None:
    body = json.dumps({"error": "Not Found", "trace_id": "t-9"}).encode()
    exc = parse_error(404, body, {}, now=NOW)
    assert exc.message == "Not Found"
    assert exc.trace_id == "t-9"


def test_long_envelope_message_is_truncated() -> None:
    exc = parse_error(400, envelope(400, 1001, "y" * 1000), {}, now=NOW)
    assert len(exc.message) == MAX_MESSAGE_CHARS
    assert exc.message.endswith("…")


def test_trace_id_from_header_when_body_has_none() -> None:
    exc = parse_error(502, b"bad gateway", {"X-Trace-Id": "hdr-1"}, now=NOW)
    assert exc.trace_id == "hdr-1"


def test_rendered_message_names_status_code_and_trace() -> None:
    exc = parse_error(404, envelope(404, 2001, "chat not found"), {}, now=NOW)
    assert str(exc) == "HTTP 404 code 2001: chat not found (trace_id tr-123)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        (" 30 ", 30.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (12, 12.0),
        (2.5, 2.5),
        ("-5", None),
        (-1, None),
        ("abc", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
        (True, None),
    ],
)
def test_parse_retry_after_values(value: str | float | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_http_date_in_the_future_and_past() -> None:
    future = format_datetime(NOW + timedelta(minutes=5), usegmt=True)
    past = format_datetime(NOW - timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(future, NOW) == 300.0
    assert parse_retry_after(past, NOW) == 0.0


@given(
    status=st.integers(min_value=300, max_value=599),
    body=st.binary(max_size=2000),
    retry=st.one_of(st.none(), st.text(max_size=40)),
)
def test_parse_error_never_raises_and_stays_short(
    status: int, body: bytes, retry: str | None
) -> None:
    headers = {} if retry is None else {"Retry-After": retry}
    exc = parse_error(status, body, headers, now=NOW)
    assert isinstance(exc, LinqAPIError)
    assert exc.status == status
    assert len(exc.message) <= MAX_MESSAGE_CHARS
    assert exc.retry_after is None or exc.retry_after >= 0
