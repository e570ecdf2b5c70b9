"""The simulator as one ASGI app: Linq's paths under ``/api/partner/v3``, controls under ``/_sim``.

Clients use ``http://host:port/api/partner`` as their base URL, exactly as they would use
``https://api.linqapp.com/api/partner`` against the real API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import format_datetime

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler import clock
from scheduler.sim.api import DroppedConnection, Simulator, v3
from scheduler.sim.control import control_routes
from scheduler.sim.model import SimError
from scheduler.sim.participants import participant_routes
from scheduler.sim.routes_cards import card_routes
from scheduler.sim.routes_chats import chat_routes
from scheduler.sim.routes_handles import handle_routes
from scheduler.sim.routes_numbers import phone_number_routes
from scheduler.sim.routes_webhooks import webhook_subscription_routes
from scheduler.sim.settings import SimSettings
from scheduler.sim.state import SimState
from scheduler.sim.webhooks import WebhookDispatcher

API_PREFIX = "/api/partner"


class _HideDroppedConnections(logging.Filter):
    """A dropped connection is an injected fault, not a crash worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedConnections) for f in logger.filters):
        logger.addFilter(_HideDroppedConnections())


class _ClockDate:
    """Sends the Date header from the simulator's clock, as Linq's servers send theirs.

    Processes on a shifted test clock then see a server that agrees with them, and a client
    checking its own clock against the server's can be tested.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                stamp = format_datetime(clock.now(), usegmt=True).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", stamp)]}
            await send(message)

        await self.app(scope, receive, send_with_date)


def build_simulator(settings: SimSettings) -> Simulator:
    webhooks = WebhookDispatcher(settings)
    return Simulator(settings, SimState(settings, webhooks.submit), webhooks)


def create_app(settings: SimSettings) -> Starlette:
    sim = build_simulator(settings)
    _install_log_filter()

    async def unknown(request: Request, trace_id: str) -> Response:
        raise SimError(404, 1001, f"no such endpoint: {request.method} {request.url.path}")

    api_routes = [
        *card_routes(sim),
        *chat_routes(sim),
        *participant_routes(sim),
        *webhook_subscription_routes(sim),
        *phone_number_routes(sim),
        *handle_routes(sim),
        Route("/v3/{rest:path}", v3(sim, unknown), methods=["GET", "POST", "PATCH", "DELETE"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sim.webhooks.start()
        try:
            yield
        finally:
            await sim.webhooks.close()

    app = Starlette(
        routes=[Mount(API_PREFIX, routes=api_routes), *control_routes(sim)],
        lifespan=lifespan,
        middleware=[Middleware(_ClockDate)],
    )
    app.state.sim = sim
    return app
