"""Plumbing shared by the /v3 routes: auth, latency, injected 429s, trace ids, error envelope."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from scheduler.sim.model import SimError
from scheduler.sim.settings import SimSettings
from scheduler.sim.state import SimState
from scheduler.sim.subscriptions import SubscriptionStore
from scheduler.sim.webhooks import WebhookDispatcher

Handler = Callable[[Request, str], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Simulator:
    settings: SimSettings
    state: SimState
    webhooks: WebhookDispatcher
    subscriptions: SubscriptionStore = field(init=False)

    def __post_init__(self) -> None:
        self.subscriptions = SubscriptionStore(self.state.new_id)


class DroppedConnection(Exception):
    """Raised once the response has started, so the server closes the socket mid-answer."""


class DroppedResponse(Response):
    """Starts an answer and never finishes it: the client sees a protocol error."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        raise DroppedConnection


def new_trace_id() -> str:
    return os.urandom(16).hex()


def compact_json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def json_response(data: Any, trace_id: str, status: int = 200) -> Response:
    return Response(
        compact_json(data),
        status_code=status,
        media_type="application/json",
        headers={"X-Trace-Id": trace_id},
    )


def error_response(err: SimError, trace_id: str) -> Response:
    error: dict[str, Any] = {"status": err.status, "code": err.code, "message": err.message}
    headers = {"X-Trace-Id": trace_id}
    if err.retry_after is not None:
        seconds = max(1, math.ceil(err.retry_after)) if err.retry_after > 0 else 0
        error["retry_after"] = seconds
        headers["Retry-After"] = str(seconds)
    body = {"success": False, "error": error, "trace_id": trace_id}
    return Response(
        compact_json(body), status_code=err.status, media_type="application/json", headers=headers
    )


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, ``{}`` when empty; SimError 400/1001 when it is not one."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SimError(400, 1001, "the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise SimError(400, 1001, "the body must be a JSON object")
    return body


def query_phone(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    # An unencoded "+" in a query string decodes to a space; accept the number anyway.
    if value.startswith(" ") and value[1:].isdigit():
        return "+" + value[1:]
    return value


def v3(sim: Simulator, handler: Handler, *, share: bool = False) -> Endpoint:
    """Wrap a /v3 handler with what every real endpoint does before and after its own work."""

    async def endpoint(request: Request) -> Response:
        trace_id = new_trace_id()
        settings = sim.settings
        try:
            if settings.latency_ms > 0:
                await asyncio.sleep(settings.latency_ms / 1000)
            given = request.headers.get("authorization", "")
            expected = f"Bearer {settings.token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise SimError(401, 2004, "missing or invalid API token")
            if sim.state.roll(settings.global_429_rate):
                raise SimError(
                    429,
                    1007,
                    "rate limited",
                    retry_after=settings.retry_after,
                    fault="global_429",
                )
            return await handler(request, trace_id)
        except SimError as err:
            if share:
                sim.state.record_call(
                    request.path_params["chat_id"],
                    err.status,
                    err.code,
                    trace_id,
                    applied=False,
                    fault=err.fault,
                )
            return error_response(err, trace_id)

    return endpoint


def v3_route(
    sim: Simulator, path: str, handlers: Mapping[str, Handler], *, share: bool = False
) -> Route:
    """One /v3 path whose methods each have their handler, each wrapped by :func:`v3`."""
    endpoints = {method: v3(sim, handler, share=share) for method, handler in handlers.items()}

    async def by_method(request: Request) -> Response:
        return await endpoints[request.method](request)

    return Route(path, by_method, methods=list(endpoints))
