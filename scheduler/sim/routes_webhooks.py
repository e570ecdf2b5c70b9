"""``/v3/webhook-subscriptions[/{id}]``: list, create, read, update and delete subscriptions.

Updates are partial and answer to ``PUT`` (what Linq's SDK sends) as well as ``PATCH`` (what
the API notes say).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler.sim.api import Simulator, json_response, read_json, v3_route


def webhook_subscription_routes(sim: Simulator) -> list[Route]:
    store = sim.subscriptions

    async def list_all(request: Request, trace_id: str) -> Response:
        items = [s.to_json() for s in store.items.values()]
        return json_response({"subscriptions": items}, trace_id)

    async def create(request: Request, trace_id: str) -> Response:
        subscription, secret = store.create(await read_json(request))
        return json_response({**subscription.to_json(), "signing_secret": secret}, trace_id)

    async def read(request: Request, trace_id: str) -> Response:
        return json_response(store.get(request.path_params["id"]).to_json(), trace_id)

    async def update(request: Request, trace_id: str) -> Response:
        body = await read_json(request)
        return json_response(store.update(request.path_params["id"], body).to_json(), trace_id)

    async def delete(request: Request, trace_id: str) -> Response:
        store.delete(request.path_params["id"])
        return Response(status_code=204, headers={"X-Trace-Id": trace_id})

    one = {"GET": read, "PUT": update, "PATCH": update, "DELETE": delete}
    return [
        v3_route(sim, "/v3/webhook-subscriptions", {"GET": list_all, "POST": create}),
        v3_route(sim, "/v3/webhook-subscriptions/{id}", one),
    ]
