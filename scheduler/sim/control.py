"""``/_sim/``: the test-facing control API (no auth). Not part of Linq's API.

- ``GET  /_sim/health``                      -> ``{"ok": true}``
- ``GET  /_sim/state``                       -> counts, webhook stats, knobs, the simulator's now
- ``GET  /_sim/shares[?chat_id=]``           -> applied shares ``{"shares": [...]}``
- ``GET  /_sim/calls[?chat_id=]``            -> every share call with its status and code
- ``POST /_sim/faults``                      -> partial update of the knobs, returns all knobs
- ``POST /_sim/chats/{id}/inbound``          -> ``{"text", "from"?}``: the recipient writes in
                                               (``{"dropped": true}`` from a blocked handle)
- ``GET  /_sim/cards/calls``                 -> every contact card call with its answer
- ``POST /_sim/blocked_handles``             -> ``{"handle", "blocked", "reason"?}``: block or
                                               unblock a handle on the account's list
- ``POST /_sim/lines/{phone}/status``        -> ``{"status", "reputation"?}``: flag or restore
                                               a line (sends ``phone_number.status_updated``)
- ``DELETE /_sim/cards/{phone}``             -> delete a card
- ``POST /_sim/seed``                        -> bulk-create chats
- ``POST /_sim/webhooks``                    -> ``{"enabled", "url"?, "secret"?}``
- ``GET  /_sim/webhooks``                    -> delivery stats and the latest deliveries
- ``POST /_sim/webhooks/drain``              -> ``{"timeout"?}``: wait for pending deliveries
- ``POST /_sim/messages/{id}/fail``          -> ``{"code"?}``: an outbound message fails
- ``POST /_sim/reset``                       -> forget cards, chats, shares, limits, subscriptions
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler import clock
from scheduler.config import E164
from scheduler.sim.api import Endpoint, Simulator, compact_json, read_json
from scheduler.sim.model import SERVICES, SimError, iso

MAX_SEED = 1_000_000


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _ok(data: Any, status: int = 200) -> Response:
    return Response(compact_json(data), status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    try:
        return await read_json(request)
    except SimError as exc:
        # The control API's own error shape: no Linq code.
        raise ControlError(exc.status, exc.message) from exc


def _is_whole_number(value: Any) -> bool:
    # JSON's true and false arrive as Python bools, which are ints too.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: Any) -> bool:
    return (_is_whole_number(value) or isinstance(value, float)) and not value < 0


def _start_time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        start = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ControlError(400, f"start: {value!r} is not an ISO-8601 time") from exc
    if start.tzinfo is None:
        raise ControlError(400, "start must carry a time zone (e.g. 2026-01-05T09:00:00Z)")
    return start


def control_routes(sim: Simulator) -> list[Route]:
    state = sim.state
    hooks = sim.webhooks

    def guarded(handler: Endpoint) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except ControlError as err:
                return _ok({"error": err.message}, err.status)
            except SimError as err:
                return _ok({"error": err.message, "code": err.code}, err.status)
            return response

        return endpoint

    async def health(request: Request) -> Response:
        return _ok({"ok": True})

    async def show_state(request: Request) -> Response:
        return _ok(
            {
                "now": iso(clock.now()),
                "counts": state.counts(),
                "webhooks": hooks.stats(),
                "knobs": sim.settings.knobs(),
            }
        )

    async def shares(request: Request) -> Response:
        chat_id = request.query_params.get("chat_id")
        found = state.shares if chat_id is None else state.shares_by_chat.get(chat_id, [])
        return _ok({"shares": [s.to_json() for s in found]})

    async def calls(request: Request) -> Response:
        chat_id = request.query_params.get("chat_id")
        found = state.calls if chat_id is None else state.calls_by_chat.get(chat_id, [])
        return _ok({"calls": [c.to_json() for c in found]})

    async def faults(request: Request) -> Response:
        try:
            sim.settings.update(await _body(request))
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc
        return _ok({"knobs": sim.settings.knobs()})

    async def inbound(request: Request) -> Response:
        body = await _body(request)
        text = body.get("text")
        sender = body.get("from")
        if not isinstance(text, str) or not text:
            raise ControlError(400, "text is required")
        if sender is not None and not isinstance(sender, str):
            raise ControlError(400, "from must be a handle string")
        chat_id = request.path_params["chat_id"]
        message = state.receive_message(chat_id, text, sender)
        if message is None:
            return _ok({"dropped": True})
        return _ok({"message": message.to_json(), "chat": state.chat_json(state.chats[chat_id])})

    async def fail_message(request: Request) -> Response:
        body = await _body(request)
        code = body.get("code", 4001)
        if not _is_whole_number(code):
            raise ControlError(400, "code must be a whole number")
        message = state.fail_message(request.path_params["message_id"], code)
        return _ok({"message": message.to_json()})

    async def card_calls(request: Request) -> Response:
        return _ok({"calls": list(state.card_calls)})

    async def blocked_handles(request: Request) -> Response:
        body = await _body(request)
        handle = body.get("handle")
        blocked = body.get("blocked", True)
        reason = body.get("reason")
        if not isinstance(handle, str) or not handle:
            raise ControlError(400, "handle is required")
        if not isinstance(blocked, bool):
            raise ControlError(400, "blocked must be true or false")
        if reason is not None and not isinstance(reason, str):
            raise ControlError(400, "reason must be a string")
        if blocked:
            state.block(handle, reason)
        else:
            state.unblock(handle)
        return _ok({"blocked_handles": state.blocked_handles()})

    async def line_status(request: Request) -> Response:
        body = await _body(request)
        data = state.set_line_status(
            request.path_params["phone"],
            str(body.get("status", "")),
            str(body.get("reputation", "HEALTHY")),
        )
        return _ok(data)

    async def delete_card(request: Request) -> Response:
        if not state.delete_card(request.path_params["phone"]):
            raise ControlError(404, "no such card")
        return _ok({"deleted": True})

    async def seed(request: Request) -> Response:
        body = await _body(request)
        number = body.get("from")
        count = body.get("count", 1)
        service = body.get("service", "iMessage")
        spacing = body.get("spacing_seconds", 1.0)
        if not isinstance(number, str) or not E164.match(number):
            raise ControlError(400, "from must be an E.164 number")
        if not _is_whole_number(count) or not 1 <= count <= MAX_SEED:
            raise ControlError(400, f"count must be an integer from 1 to {MAX_SEED}")
        if service not in SERVICES:
            raise ControlError(400, f"service must be one of {', '.join(SERVICES)}")
        if not _is_seconds(spacing):
            raise ControlError(400, "spacing_seconds must be a number >= 0")
        ids = state.seed(
            number,
            count,
            service=service,
            is_group=bool(body.get("is_group", False)),
            outbound=bool(body.get("outbound", True)),
            start=_start_time(body.get("start")),
            spacing=timedelta(seconds=spacing),
            webhooks=bool(body.get("webhooks", False)),
        )
        return _ok({"created": len(ids), "chat_ids": ids})

    async def configure_webhooks(request: Request) -> Response:
        body = await _body(request)
        url = body.get("url")
        secret = body.get("secret")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            raise ControlError(400, "url must be an http(s) URL")
        if secret is not None and not isinstance(secret, str):
            raise ControlError(400, "secret must be a string")
        try:
            hooks.configure(enabled=bool(body.get("enabled", True)), url=url, secret=secret)
        except ValueError as exc:
            raise ControlError(400, f"secret: {exc}") from exc
        return _ok(hooks.stats())

    async def webhook_stats(request: Request) -> Response:
        return _ok({**hooks.stats(), "recent": list(hooks.recent)})

    async def drain(request: Request) -> Response:
        body = await _body(request)
        timeout = body.get("timeout", 30)
        if not _is_seconds(timeout):
            raise ControlError(400, "timeout must be a number of seconds")
        drained = await hooks.drain(float(timeout))
        return _ok({"drained": drained, **hooks.stats()}, 200 if drained else 504)

    async def reset(request: Request) -> Response:
        state.reset()
        sim.subscriptions.reset()
        return _ok({"reset": True})

    return [
        Route("/_sim/health", guarded(health), methods=["GET"]),
        Route("/_sim/state", guarded(show_state), methods=["GET"]),
        Route("/_sim/shares", guarded(shares), methods=["GET"]),
        Route("/_sim/calls", guarded(calls), methods=["GET"]),
        Route("/_sim/faults", guarded(faults), methods=["POST"]),
        Route("/_sim/chats/{chat_id}/inbound", guarded(inbound), methods=["POST"]),
        Route("/_sim/cards/calls", guarded(card_calls), methods=["GET"]),
        Route("/_sim/cards/{phone}", guarded(delete_card), methods=["DELETE"]),
        Route("/_sim/messages/{message_id}/fail", guarded(fail_message), methods=["POST"]),
        Route("/_sim/blocked_handles", guarded(blocked_handles), methods=["POST"]),
        Route("/_sim/lines/{phone}/status", guarded(line_status), methods=["POST"]),
        Route("/_sim/seed", guarded(seed), methods=["POST"]),
        Route("/_sim/webhooks", guarded(configure_webhooks), methods=["POST"]),
        Route("/_sim/webhooks", guarded(webhook_stats), methods=["GET"]),
        Route("/_sim/webhooks/drain", guarded(drain), methods=["POST"]),
        Route("/_sim/reset", guarded(reset), methods=["POST"]),
    ]
