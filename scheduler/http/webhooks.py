"""``POST /webhooks/linq``: verify, parse, dedupe, apply — and answer fast.

Answers: 2xx when applied, repeated or ignored; 401 for a missing, stale or wrong signature;
400 for a signed body that is not a valid event; 413 too large; 415 not JSON; 503 when the
ledger is unavailable, so that Linq retries the delivery. Nothing is written before the
signature and the timestamp check out, and a replayed event id changes nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse

from scheduler import clock
from scheduler.errors import LedgerUnavailable
from scheduler.ingest.events import KNOWN_EVENTS, EventError, parse_event
from scheduler.ingest.signing import SignatureVerdict, verify

if TYPE_CHECKING:
    from scheduler.http.app import Runtime

log = structlog.get_logger("scheduler.webhooks")


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    # A digits-only check first: int() refuses "²" and numbers of more than 4300 digits.
    if declared is not None and (
        not (declared.isascii() and declared.isdigit())
        or len(declared) > 18
        or int(declared) > limit
    ):
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def type_label(event_type: str | None) -> str:
    """The metric label of an event type: unknown or unsigned values must not grow the series."""
    return event_type if event_type in KNOWN_EVENTS else "other"


async def linq_webhook(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    cfg = runtime.schedule.webhooks
    metrics = runtime.metrics
    header_type = (request.headers.get("x-webhook-event") or "unknown")[:64]

    def reject(status: int, result: str, message: str, **fields: object) -> JSONResponse:
        metrics.webhook_events.labels(type=type_label(header_type), result=result).inc()
        log.warning(
            "webhook.rejected", status=status, reason=result, event_type=header_type, **fields
        )
        return _error(status, message)

    try:
        body = await _read_body(request, cfg.max_body_bytes)
    except _TooLarge:
        return reject(413, "too_large", f"body larger than {cfg.max_body_bytes} bytes")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return reject(415, "bad_content_type", "Content-Type must be application/json")
    verdict = verify(
        secrets=runtime.webhook_secrets(),
        timestamp=request.headers.get("x-webhook-timestamp"),
        signature=request.headers.get("x-webhook-signature"),
        body=body,
        now_unix=clock.now().timestamp(),
        tolerance_seconds=cfg.tolerance.total_seconds(),
    )
    if verdict != SignatureVerdict.valid:
        return reject(401, f"signature_{verdict}", "invalid webhook signature")
    try:
        event = parse_event(json.loads(body))
    except ValueError:
        # JSONDecodeError, UnicodeDecodeError, and integers beyond Python's digit limit.
        return reject(400, "malformed", "body is not valid JSON")
    except EventError as exc:
        return reject(400, "invalid", f"invalid event: {exc}")
    except RecursionError:
        return reject(400, "malformed", "body nests too deeply")
    bound = {"event_id": event.event_id, "event_type": event.event_type}
    if event.activity is not None:
        bound["chat_id"] = event.activity.chat_id
    try:
        result = await runtime.event_writer().submit(event)
    except LedgerUnavailable as exc:
        metrics.webhook_events.labels(type=type_label(event.event_type), result="unavailable").inc()
        log.error("webhook.ledger_unavailable", error=str(exc), **bound)
        return _error(503, "ledger unavailable, retry later")
    metrics.webhook_events.labels(type=type_label(event.event_type), result=result).inc()
    log.debug("webhook.accepted", result=result, **bound)
    if event.card_number is not None and result == "ignored":
        runtime.card_event(event.card_number)
    return JSONResponse({"ok": True, "result": result})
