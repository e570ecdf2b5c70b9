"""Merging activity into a chat's ledger record. Pure code.

Events arrive late, twice and out of order: first times take the minimum, last times the
maximum, and nothing a stale event says overwrites fresher knowledge.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scheduler.core.event import ChatActivity
from scheduler.core.status import ChatStatus
from scheduler.times import earliest, latest

CHAT_DEFAULTS: dict[str, Any] = {
    "line": None,
    "recipients": "",
    "is_group": False,
    "service": None,
    "first_outbound_at": None,
    "last_outbound_at": None,
    "last_inbound_at": None,
    "last_shared_at": None,
    "share_count": 0,
    "status": ChatStatus.active,
    "not_before": None,
    "consecutive_failures": 0,
    "next_share_at": None,
    "claimed_by": None,
    "claim_attempt_id": None,
    "claim_expires_at": None,
    "claim_started_at": None,
    "claim_forced": None,
    "last_error": None,
}


# Not a column: the latest opt-out time the merged activities reported, which the writer
# records on the recipient (account-wide) and pops before writing the chat.
OPT_OUT_SEEN = "_opt_out_seen_at"


def merge_activity(current: dict[str, Any] | None, act: ChatActivity) -> dict[str, Any]:
    """The chat's columns after ``act``; ``current`` is None for a chat not yet known.

    Applying the same activities in any order, any number of times, gives the same columns;
    except for a member both added and removed (participant events), where the later-applied
    one wins.
    """
    chat = dict(CHAT_DEFAULTS if current is None else current)
    chat["chat_id"] = act.chat_id
    if act.line and not chat.get("line"):
        chat["line"] = act.line
    if act.recipients or act.removed_recipients:
        known = {r for r in (chat.get("recipients") or "").split(",") if r}
        known = known.union(act.recipients or ()).difference(act.removed_recipients or ())
        # Sorted, so that the first recipient (whose number may pick the time zone) does not
        # depend on which event arrived first.
        chat["recipients"] = ",".join(sorted(known))
    if act.is_group is not None:
        chat["is_group"] = act.is_group
    if act.service and (chat.get("service") is None or not act.historical):
        chat["service"] = act.service
    elif (
        chat.get("service") is None
        and act.message_service is not None
        and act.message_service.lower() == "imessage"
    ):
        # A message sent over iMessage proves the chat is one; an SMS message proves nothing
        # (Apple downgrades single messages), so it never sets the chat's service.
        chat["service"] = act.message_service
    chat["first_outbound_at"] = earliest(chat.get("first_outbound_at"), act.outbound_at)
    chat["last_outbound_at"] = latest(chat.get("last_outbound_at"), act.outbound_at)
    previous_inbound = chat.get("last_inbound_at")
    inbound = act.inbound_at
    if act.opted_out and act.opted_out_at is not None:
        # Opting out is the recipient writing STOP: an inbound message at that time.
        inbound = latest(inbound, act.opted_out_at)
        chat[OPT_OUT_SEEN] = latest(chat.get(OPT_OUT_SEEN), act.opted_out_at)
    chat["last_inbound_at"] = latest(previous_inbound, inbound)
    chat["status"] = _status(chat.get("status"), act, previous_inbound)
    return chat


def _status(status: Any, act: ChatActivity, previous_inbound: datetime | None) -> Any:
    """Opt-outs are ordered by the recipient's messages: the latest one decides.

    An opt-out is void when the ledger already knows of a later inbound message (the recipient
    wrote again); an inbound message clears an opt-out only when it is later than every inbound
    message known, the STOP included. Ties go to the opt-out. Paused and gone chats keep their
    status: pausing is an operator's decision, and a gone chat does not come back.
    """
    if act.opted_out:
        when = act.opted_out_at
        superseded = when is not None and previous_inbound is not None and previous_inbound > when
        if status == ChatStatus.active and not superseded:
            return ChatStatus.opted_out
        return status
    if (
        status == ChatStatus.opted_out
        and act.inbound_at is not None
        and (previous_inbound is None or act.inbound_at > previous_inbound)
    ):
        return ChatStatus.active
    return status
