"""``/v3/chats``: traffic (create chats, send messages), listings, and share_contact_card.

``POST /v3/chats`` answers ``{"chat": {..., "message"}}`` (the SDK's ``ChatCreateResponse``);
``POST /v3/chats/{id}/messages`` answers ``{"chat_id", "message"}`` (``MessageSendResponse``).
``GET /v3/chats/{id}`` (one chat object) is served as well.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler.sim.api import (
    DroppedResponse,
    Simulator,
    json_response,
    query_phone,
    read_json,
    v3_route,
)
from scheduler.sim.state import check_limit


def chat_routes(sim: Simulator) -> list[Route]:
    state = sim.state

    async def create_chat(request: Request, trace_id: str) -> Response:
        chat, message = state.create_chat(await read_json(request), trace_id)
        return json_response(chat.created_json(state.health(chat), message), trace_id)

    async def list_chats(request: Request, trace_id: str) -> Response:
        limit = check_limit(request.query_params.get("limit"))
        page = state.list_chats(
            query_phone(request, "from"), limit, request.query_params.get("cursor")
        )
        chats = [state.chat_json(c) for c in page.items]
        return json_response({"chats": chats, "next_cursor": page.next_cursor}, trace_id)

    async def get_chat(request: Request, trace_id: str) -> Response:
        chat = state.get_chat(request.path_params["chat_id"])
        return json_response(state.chat_json(chat), trace_id)

    async def send_message(request: Request, trace_id: str) -> Response:
        chat_id = request.path_params["chat_id"]
        message = state.send_message(chat_id, await read_json(request), trace_id)
        return json_response({"chat_id": chat_id, "message": message.sent_json()}, trace_id)

    async def list_messages(request: Request, trace_id: str) -> Response:
        limit = check_limit(request.query_params.get("limit"))
        page = state.list_messages(
            request.path_params["chat_id"], limit, request.query_params.get("cursor")
        )
        messages = [m.to_json() for m in page.items]
        return json_response({"messages": messages, "next_cursor": page.next_cursor}, trace_id)

    async def share(request: Request, trace_id: str) -> Response:
        chat_id = request.path_params["chat_id"]
        fault = state.share_fault()
        if fault == "reset":
            state.record_call(chat_id, None, None, trace_id, applied=False, fault=fault)
            return DroppedResponse()
        state.share(chat_id)
        state.record_call(chat_id, 200, None, trace_id, applied=True, fault=fault)
        if fault == "timeout":
            # Applied, then answered too late: the client cannot tell whether it happened.
            await asyncio.sleep(sim.settings.timeout_hold)
        return Response(status_code=200, headers={"X-Trace-Id": trace_id})

    return [
        v3_route(sim, "/v3/chats", {"GET": list_chats, "POST": create_chat}),
        v3_route(sim, "/v3/chats/{chat_id}", {"GET": get_chat}),
        v3_route(sim, "/v3/chats/{chat_id}/messages", {"GET": list_messages, "POST": send_message}),
        v3_route(sim, "/v3/chats/{chat_id}/share_contact_card", {"POST": share}, share=True),
    ]
