"""``GET /v3/phone_numbers``: the account's lines, each with its reputation (the SDK's shape).

The lines are the ``lines`` knob when set, else every number the account has used (a card or
a chat). Every line reads ``HEALTHY`` here.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler.sim.api import Simulator, json_response, v3_route

REPUTATION_DOC_URL = "https://docs.linqapp.com/channel/imessage/guides/phone-numbers/reputation#"


def phone_number_json(number: str) -> dict[str, object]:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"linq-sim:phone-number:{number}")),
        "phone_number": number,
        "line_type": "iMessage",
        "reputation": {"status": "HEALTHY", "doc_url": REPUTATION_DOC_URL + "healthy"},
    }


def phone_number_routes(sim: Simulator) -> list[Route]:
    state = sim.state

    async def list_numbers(request: Request, trace_id: str) -> Response:
        lines = sim.settings.lines
        numbers = lines if lines is not None else sorted({*state.cards, *state.chats_by_line})
        body = {"phone_numbers": [phone_number_json(n) for n in numbers]}
        return json_response(body, trace_id)

    return [v3_route(sim, "/v3/phone_numbers", {"GET": list_numbers})]
