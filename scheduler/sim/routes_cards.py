"""``/v3/contact_card``: create, partially update and read the cards of our numbers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler import clock
from scheduler.sim.api import Simulator, json_response, query_phone, read_json, v3


def card_routes(sim: Simulator) -> list[Route]:
    state = sim.state

    async def create(request: Request, trace_id: str) -> Response:
        card = state.create_card(await read_json(request), trace_id)
        return json_response(card.to_json(clock.now()), trace_id)

    async def update(request: Request, trace_id: str) -> Response:
        body = await read_json(request)
        card = state.update_card(query_phone(request, "phone_number"), body, trace_id)
        return json_response(card.to_json(clock.now()), trace_id)

    async def read(request: Request, trace_id: str) -> Response:
        cards = state.get_cards(query_phone(request, "phone_number"))
        at = clock.now()
        return json_response({"contact_cards": [c.to_json(at) for c in cards]}, trace_id)

    by_method = {"POST": v3(sim, create), "PATCH": v3(sim, update), "GET": v3(sim, read)}

    async def dispatch(request: Request) -> Response:
        return await by_method[request.method](request)

    return [Route("/v3/contact_card", dispatch, methods=["GET", "POST", "PATCH"])]
