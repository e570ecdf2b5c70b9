"""Group membership: ``POST`` / ``DELETE /v3/chats/{id}/participants`` and their webhooks.

As Linq documents it: members are added to group chats only, and a member added or removed
is reported by ``participant.added`` / ``participant.removed`` (``data {handle, chat_id,
participant, added_at | removed_at}``). The answer is ``{"status", "message", "trace_id"}``.
Where the documentation is silent: adding a current member, or removing one who is not, is
400 (1001); a group keeps at least two recipients (400, 1001).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler import clock
from scheduler.config import E164
from scheduler.sim.api import Simulator, json_response, read_json, v3_route
from scheduler.sim.model import Chat, Handle, SimError, iso
from scheduler.sim.state import SimState


def _handle(body: dict[str, Any]) -> str:
    handle = body.get("handle")
    if handle is None or handle == "":
        raise SimError(400, 1003, "handle is required")
    if not isinstance(handle, str) or not (E164.match(handle) or "@" in handle):
        raise SimError(400, 1002, f"{handle!r} is not an E.164 number or an email")
    return handle


def _group(state: SimState, chat_id: str) -> Chat:
    chat = state.get_chat(chat_id)
    if not chat.is_group:
        raise SimError(400, 1001, "participants can be changed in group chats only")
    return chat


def add_participant(state: SimState, chat_id: str, handle: str, trace_id: str = "") -> Handle:
    chat = _group(state, chat_id)
    if any(h.handle == handle for h in chat.recipients):
        raise SimError(400, 1001, f"{handle} is already in the chat")
    state.check_line(chat.from_number)
    at = clock.now()
    member = Handle(state.new_id(), handle, chat.service, False, at)
    chat.recipients.append(member)
    data = {"handle": handle, "chat_id": chat.id, "participant": member.to_json()}
    state.emit("participant.added", chat.id, {**data, "added_at": iso(at)}, trace_id)
    return member


def remove_participant(state: SimState, chat_id: str, handle: str, trace_id: str = "") -> None:
    chat = _group(state, chat_id)
    found = [h for h in chat.recipients if h.handle == handle]
    if not found:
        raise SimError(400, 1001, f"{handle} is not in the chat")
    if len(chat.recipients) <= 2:
        raise SimError(400, 1001, "a group chat keeps at least two other participants")
    chat.recipients.remove(found[0])
    at = clock.now()
    data = {"handle": handle, "chat_id": chat.id, "participant": found[0].to_json()}
    state.emit("participant.removed", chat.id, {**data, "removed_at": iso(at)}, trace_id)


def _accepted(message: str, trace_id: str) -> Response:
    body = {"status": "accepted", "message": message, "trace_id": trace_id}
    return json_response(body, trace_id)


def participant_routes(sim: Simulator) -> list[Route]:
    state = sim.state

    async def add(request: Request, trace_id: str) -> Response:
        handle = _handle(await read_json(request))
        add_participant(state, request.path_params["chat_id"], handle, trace_id)
        return _accepted(f"{handle} added", trace_id)

    async def remove(request: Request, trace_id: str) -> Response:
        handle = _handle(await read_json(request))
        remove_participant(state, request.path_params["chat_id"], handle, trace_id)
        return _accepted(f"{handle} removed", trace_id)

    return [v3_route(sim, "/v3/chats/{chat_id}/participants", {"POST": add, "DELETE": remove})]
