"""``POST /webhooks/linq``: verify, parse, dedupe, apply — and answer fast.

Answers: 2xx when applied, repeated or ignored; 401 for a missing, stale or wrong signature;
400 for a signed body that is not a valid event; 413 too large; 415 not JSON; 503 when the
ledger is unavailable, so that Linq retries the delivery. Nothing is written before the
signature and the timestamp check out, and a replayed event id changes nothing.

Signatures: Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)
when the three headers are present, else the deprecated ``X-Webhook-*`` headers; see
:mod:`scheduler.ingest.signing`. The ``webhook-id`` of a Standard delivery is its event id.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

from scheduler import clock
from scheduler.core.event import Event
from scheduler.errors import LedgerUnavailable
from scheduler.http.runtime import Runtime
from scheduler.ingest.events import KNOWN_EVENTS, EventError, parse_event
from scheduler.ingest.signing import (
    SignatureHeaders,
    SignatureScheme,
    SignatureVerdict,
    Verification,
    WebhookVerifier,
)
from scheduler.logs import debug_enabled

log = structlog.get_logger("scheduler.webhooks")


WEBHOOK_PATH = "/webhooks/linq"
# The request headers the endpoint reads (ASGI gives names in lowercase).
_WANTED = frozenset(
    {
        b"content-length",
        b"content-type",
        b"x-webhook-event",
        b"x-webhook-timestamp",
        b"x-webhook-signature",
        b"webhook-id",
        b"webhook-timestamp",
        b"webhook-signature",
    }
)
_JSON_HEADERS = b"application/json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _headers(scope: Scope) -> dict[bytes, str]:
    """The headers the endpoint reads, first occurrence winning (as Starlette's ``get``)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in found:
            found[name] = value.decode("latin-1")
    return found


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    # A digits-only check first: int() refuses "²" and numbers of more than 4300 digits.
    if declared is not None and (
        not (declared.isascii() and declared.isdigit())
        or len(declared) > 18
        or int(declared) > limit
    ):
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise _Disconnected
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _TooLarge
        if not message.get("more_body", False):
            return bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)


def _json(status: int, payload: dict[str, Any]) -> tuple[int, bytes]:
    # The bytes Starlette's JSONResponse renders.
    return status, json.dumps(
        payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _error(status: int, message: str) -> tuple[int, bytes]:
    return _json(status, {"ok": False, "error": message})


# The answers to accepted deliveries, rendered once.
_ACCEPTED = {r: _json(200, {"ok": True, "result": r}) for r in ("applied", "duplicate", "ignored")}


def type_label(event_type: str | None) -> str:
    """The metric label of an event type: unknown or unsigned values must not grow the series."""
    return event_type if event_type in KNOWN_EVENTS else "other"


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode("latin-1")),
                (b"content-type", _JSON_HEADERS),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class LinqWebhook:
    """The ASGI endpoint of ``POST /webhooks/linq``.

    A plain ASGI callable rather than a Starlette request handler: the app hands webhook
    deliveries to it directly, without the middleware and routing layers, which cost as much
    as the rest of a delivery's handling.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            answer = await self.handle(scope, receive)
        except Exception:
            # As Starlette's ServerErrorMiddleware: a plain 500, and the error goes on to the
            # server, which logs it.
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-length", b"21"),
                        (b"content-type", b"text/plain; charset=utf-8"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"Internal Server Error"})
            raise
        if answer is not None:
            await _respond(send, *answer)

    async def handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes] | None:
        """The status and JSON body of the answer; None when the client went away."""
        runtime = self.runtime
        cfg = runtime.schedule.webhooks
        metrics = runtime.metrics
        headers = _headers(scope)
        header_type = (headers.get(b"x-webhook-event") or "unknown")[:64]

        def reject(status: int, result: str, message: str, **fields: object) -> tuple[int, bytes]:
            metrics.webhook_event(type_label(header_type), result).inc()
            log.warning(
                "webhook.rejected", status=status, reason=result, event_type=header_type, **fields
            )
            return _error(status, message)

        try:
            body = await _read_body(receive, headers.get(b"content-length"), cfg.max_body_bytes)
        except _TooLarge:
            return reject(413, "too_large", f"body larger than {cfg.max_body_bytes} bytes")
        except _Disconnected:
            return None
        content_type = headers.get(b"content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return reject(415, "bad_content_type", "Content-Type must be application/json")
        signed = SignatureHeaders(
            webhook_id=headers.get(b"webhook-id"),
            webhook_timestamp=headers.get(b"webhook-timestamp"),
            webhook_signature=headers.get(b"webhook-signature"),
            legacy_timestamp=headers.get(b"x-webhook-timestamp"),
            legacy_signature=headers.get(b"x-webhook-signature"),
        )
        now = clock.now()
        verifier = runtime.webhook_verifier()
        verification = verifier.verify(
            signed,
            body,
            now_unix=now.timestamp(),
            tolerance_seconds=cfg.tolerance.total_seconds(),
        )
        if verification.scheme is not None:
            metrics.webhook_signature(verification.scheme).inc()
        verdict = verification.verdict
        stamp = _signed_timestamp(verifier, verification, signed, body)
        if stamp is not None:
            runtime.observe_webhook_clock(stamp, now)
        if verdict != SignatureVerdict.valid:
            return reject(
                401, f"signature_{verdict}", "invalid webhook signature", scheme=verification.scheme
            )
        try:
            payload = json.loads(body)
        except ValueError:
            # JSONDecodeError, UnicodeDecodeError, and integers beyond Python's digit limit.
            return reject(400, "malformed", "body is not valid JSON")
        except RecursionError:
            return reject(400, "malformed", "body nests too deeply")
        try:
            # Apart from the decoding: EventError is a ValueError too, and its message names
            # the bad field.
            event = parse_event(payload)
        except EventError as exc:
            return reject(400, "invalid", f"invalid event: {exc}")
        if signed.has_standard and signed.webhook_id != event.event_id:
            # Deduplication keys on the event id; the signed webhook-id must be that id.
            return reject(400, "invalid", "webhook-id does not match the body's event_id")
        try:
            result = await runtime.event_writer().submit(event)
        except LedgerUnavailable as exc:
            metrics.webhook_event(type_label(event.event_type), "unavailable").inc()
            log.error("webhook.ledger_unavailable", error=str(exc), **_bound(event))
            return _error(503, "ledger unavailable, retry later")
        metrics.webhook_event(type_label(event.event_type), result).inc()
        if debug_enabled():
            log.debug("webhook.accepted", result=result, **_bound(event))
        if event.card_number is not None and result == "ignored":
            runtime.card_event(event.card_number)
        return _ACCEPTED[result]


def _signed_timestamp(
    verifier: WebhookVerifier,
    verification: Verification,
    signed: SignatureHeaders,
    body: bytes,
) -> int | None:
    """The signer's timestamp of a correctly signed delivery, its age aside; else None.

    A skewed host clock shows as deliveries that are all "stale" yet correctly signed: a stale
    one is checked again as of its own time, so that the skew can be measured and reported.
    """
    if verification.verdict not in (SignatureVerdict.valid, SignatureVerdict.stale):
        return None
    stamp = (
        signed.webhook_timestamp
        if verification.scheme == SignatureScheme.standard
        else signed.legacy_timestamp
    )
    if stamp is None:
        return None
    at = int(stamp)
    if verification.verdict == SignatureVerdict.valid:
        return at
    again = verifier.verify(signed, body, now_unix=float(at), tolerance_seconds=0)
    return at if again.verdict == SignatureVerdict.valid else None


def _bound(event: Event) -> dict[str, str]:
    bound = {"event_id": event.event_id, "event_type": event.event_type}
    if event.activity is not None:
        bound["chat_id"] = event.activity.chat_id
    return bound
