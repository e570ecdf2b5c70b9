"""``/v3/blocked_handles``: the handles our account has blocked (Linq's list shape)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler.sim.api import Simulator, json_response, v3_route


def handle_routes(sim: Simulator) -> list[Route]:
    async def list_blocked(request: Request, trace_id: str) -> Response:
        return json_response({"blocked_handles": sim.state.blocked_handles()}, trace_id)

    return [v3_route(sim, "/v3/blocked_handles", {"GET": list_blocked})]
