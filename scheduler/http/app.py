"""The Starlette app: webhooks, /livez (alias /healthz), /readyz, /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scheduler.http.runtime import Runtime
from scheduler.http.webhooks import WEBHOOK_PATH, LinqWebhook, Receive, Scope, Send


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
