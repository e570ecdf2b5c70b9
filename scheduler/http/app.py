"""The Starlette app: webhooks, /livez (alias /healthz), /readyz, /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scheduler.config import Schedule, Secrets
from scheduler.http.webhooks import WEBHOOK_PATH, LinqWebhook, Receive, Scope, Send
from scheduler.ingest.signing import WebhookVerifier
from scheduler.ingest.skew import SkewEstimate
from scheduler.ingest.writer import EventWriter
from scheduler.ledger.engine import Ledger
from scheduler.metrics import Metrics
from scheduler.rule import Policy

log = structlog.get_logger("scheduler.http")


@dataclass
class Runtime:
    """What the HTTP side needs from the daemon; the daemon swaps fields on reload."""

    schedule: Schedule
    secrets: Secrets
    policy: Policy
    ledger: Ledger
    metrics: Metrics
    readiness: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
    on_card_event: Callable[[str], None] = field(default=lambda _number: None)
    writer: EventWriter | None = field(default=None, init=False, repr=False)
    # The verifier of the current secrets, with the Secrets object it was built from.
    _verifier: tuple[Secrets, WebhookVerifier] | None = field(default=None, init=False, repr=False)
    clock_skew: SkewEstimate = field(default_factory=SkewEstimate, init=False, repr=False)

    def event_writer(self) -> EventWriter:
        if self.writer is None:
            self.writer = EventWriter(self.ledger, lambda: self.policy)
        return self.writer

    def webhook_secrets(self) -> list[str]:
        return [s.reveal() for s in self.secrets.webhook_secrets]

    def webhook_verifier(self) -> WebhookVerifier:
        """Built once per set of secrets (a reload swaps ``secrets``), not per delivery."""
        cached = self._verifier
        if cached is None or cached[0] is not self.secrets:
            cached = self._verifier = (self.secrets, WebhookVerifier(self.webhook_secrets()))
        return cached[1]

    def card_event(self, number: str) -> None:
        self.on_card_event(number)

    def observe_webhook_clock(self, sent_unix: float, now: datetime) -> None:
        """One correctly signed delivery's timestamp (any signing scheme), stale or not."""
        estimate = self.clock_skew.observe(sent_unix, now.timestamp())
        self.metrics.webhook_clock_skew.set(estimate)
        if self.clock_skew.changed(estimate):
            tolerance = self.schedule.webhooks.tolerance.total_seconds()
            level = log.warning if abs(estimate) >= tolerance / 2 else log.info
            level(
                "webhook.clock_skew",
                offset_seconds=round(estimate, 1),
                tolerance_seconds=tolerance,
                deliveries=len(self.clock_skew.offsets),
            )


async def livez(_request: Request) -> JSONResponse:
    # Answered from the event loop: a reply means the process and its loop are alive.
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    ready, checks = await runtime.readiness()
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class _App(Starlette):
    """Starlette, but webhook deliveries go straight to their endpoint.

    ``POST /webhooks/linq`` is the one hot route: it skips the middleware stack and the
    router. Everything else (other methods on that path included: 405) goes through Starlette.
    """

    webhook: LinqWebhook | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.webhook is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == WEBHOOK_PATH
            and not scope.get("root_path")
        ):
            await self.webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(runtime: Runtime) -> Starlette:
    routes = [
        Route("/livez", livez, methods=["GET"]),
        Route("/healthz", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    webhook = LinqWebhook(runtime) if runtime.schedule.webhooks.enabled else None
    if webhook is not None:
        routes.append(Route(WEBHOOK_PATH, webhook, methods=["POST"]))
    app = _App(routes=routes)
    app.webhook = webhook
    app.state.runtime = runtime
    return app
