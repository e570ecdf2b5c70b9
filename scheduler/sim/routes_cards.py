"""``/v3/contact_card``: create, partially update and read the cards of our numbers."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler import clock
from scheduler.sim.api import Handler, Simulator, json_response, query_phone, read_json, v3_route
from scheduler.sim.model import SimError


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

    def logged(handler: Handler) -> Handler:
        """Log each card call that reaches the endpoint with its answer (``/_sim/cards/calls``)."""

        async def endpoint(request: Request, trace_id: str) -> Response:
            number = request.query_params.get("phone_number")
            if request.method == "POST":
                number = await _body_phone(request)
            try:
                response = await handler(request, trace_id)
            except SimError as err:
                state.record_card_call(request.method, number, err.status, err.code)
                raise
            state.record_card_call(request.method, number, response.status_code, None)
            return response

        return endpoint

    by_method = {"GET": logged(read), "POST": logged(create), "PATCH": logged(update)}
    return [v3_route(sim, "/v3/contact_card", by_method)]


async def _body_phone(request: Request) -> str | None:
    """The ``phone_number`` of a POST body, for the call log only (the handler validates)."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    number = body.get("phone_number") if isinstance(body, dict) else None
    return number if isinstance(number, str) else None
