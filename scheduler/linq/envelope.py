"""Turn Linq error responses into typed exceptions.

Linq answers every error with
``{"success": false, "error": {"status", "code", "message", "retry_after"?}, "trace_id"}``,
but a proxy or load balancer in front of it may answer with HTML, plain text or nothing. Every
such response still becomes a :class:`~scheduler.errors.LinqAPIError` subclass with a short,
readable message, so callers can dispatch on the type alone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from scheduler import clock
from scheduler.errors import (
    AccessDenied,
    BadRequest,
    CardExists,
    CardNotActive,
    CardSetupIncomplete,
    CardWriteThrottled,
    ChatNotFound,
    HandleBlocked,
    LineIneligible,
    LinqAPIError,
    OptedOut,
    RateLimited,
    ServerError,
    Unauthorized,
)

MAX_MESSAGE_CHARS = 200
TRACE_ID_HEADERS = ("x-trace-id", "x-request-id")

_BY_CODE: dict[int, type[LinqAPIError]] = {
    1001: BadRequest,
    1002: BadRequest,
    1003: BadRequest,
    1004: BadRequest,
    1005: BadRequest,
    1007: RateLimited,
    2001: ChatNotFound,
    2004: Unauthorized,
    2005: AccessDenied,
    2012: CardNotActive,
    2014: CardExists,
    2022: CardSetupIncomplete,
    2024: OptedOut,
    2026: HandleBlocked,
    2027: LineIneligible,
    4004: CardWriteThrottled,
}

# Without a code, only statuses with a single documented meaning get a specific type. 403 and
# 404 each cover two codes whose handling is drastic (mark a line broken, retire a chat), and a
# bare 404 is what a wrong base URL produces, so those stay a plain LinqAPIError.
_BY_STATUS: dict[int, type[LinqAPIError]] = {
    400: BadRequest,
    401: Unauthorized,
    409: CardExists,
    422: BadRequest,
    429: RateLimited,
}

_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


def error_class(status: int, code: int | None) -> type[LinqAPIError]:
    """The exception type for an error response: by code first, then by HTTP status."""
    if code is not None:
        if code in _BY_CODE:
            return _BY_CODE[code]
        if 3000 <= code <= 3999:
            return ServerError
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 500 <= status <= 599:
        return ServerError
    return LinqAPIError


def parse_retry_after(value: str | float | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), else None.

    A date already past means "now" (0.0); anything unreadable or negative is ignored rather
    than guessed at.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            seconds = float(text)
        except ValueError:
            return _seconds_until_http_date(text, now)
    else:
        seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _seconds_until_http_date(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that also works on a plain dict."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def trace_id_from_headers(headers: Mapping[str, str]) -> str | None:
    for name in TRACE_ID_HEADERS:
        value = header(headers, name)
        if value:
            return value.strip()[:MAX_MESSAGE_CHARS]
    return None


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = _SPACE.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def parse_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: datetime | None = None,
) -> LinqAPIError:
    """Build the typed exception for a non-2xx response. Never raises."""
    data = _load_json(body)
    parsed = data is not _NOT_JSON
    if not parsed:
        data = None
    error: Any = data.get("error") if isinstance(data, dict) else None
    code: int | None = None
    message: str | None = None
    field_retry: float | None = None
    trace_id: str | None = None
    moment = clock.now() if now is None else now

    if isinstance(error, dict):
        code = _as_code(error.get("code"))
        message = _as_text(error.get("message"))
        field_retry = parse_retry_after(_as_number_or_text(error.get("retry_after")), moment)
    elif isinstance(error, str):
        message = _as_text(error)
    if isinstance(data, dict):
        trace_id = _as_text(data.get("trace_id"))
        if message is None:
            message = _as_text(data.get("message")) or _as_text(data.get("detail"))
        if code is None:
            code = _as_code(data.get("code"))

    header_retry = parse_retry_after(header(headers, "retry-after"), moment)
    candidates = [v for v in (header_retry, field_retry) if v is not None]
    retry_after = max(candidates) if candidates else None

    if message is None:
        message = _describe_unstructured(status, body, headers, parsed=parsed)
    trace_id = clip(trace_id) if trace_id else trace_id_from_headers(headers)
    cls = error_class(status, code)
    return cls(
        clip(message),
        status=status,
        code=code,
        retry_after=retry_after,
        trace_id=trace_id,
    )


_NOT_JSON = object()


def _load_json(body: bytes) -> Any:
    if not body.strip():
        return _NOT_JSON
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _NOT_JSON


def _as_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _as_text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None


def _as_number_or_text(value: Any) -> str | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        return value
    return None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unexpected status"


def _describe_unstructured(
    status: int, body: bytes, headers: Mapping[str, str], *, parsed: bool
) -> str:
    reason = _reason(status)
    if not body.strip():
        return f"{reason} (empty body)"
    if parsed:
        return f"{reason} (JSON body without an error envelope)"
    content_type = (header(headers, "content-type") or "unknown type").split(";")[0].strip()
    content_type = clip(content_type, 40) or "unknown type"
    text = body.decode("utf-8", errors="replace")
    if "html" in content_type.lower() or text.lstrip().startswith("<"):
        text = _TAG.sub(" ", text)
    snippet = clip(text, MAX_MESSAGE_CHARS - len(reason) - len(content_type) - 20)
    if not snippet:
        return f"{reason} (non-JSON body, {content_type})"
    return f"{reason} (non-JSON body, {content_type}): {snippet}"
