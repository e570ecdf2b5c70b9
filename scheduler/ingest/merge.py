"""Merging activity into a chat's ledger record. Pure code.

Events arrive late, twice and out of order: first times take the minimum, last times the
maximum, and nothing a stale event says overwrites fresher knowledge.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scheduler.ingest.events import ChatActivity
from scheduler.ledger.models import ChatStatus

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
    "last_error": None,
}


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def merge_activity(current: dict[str, Any] | None, act: ChatActivity) -> dict[str, Any]:
    """The chat's columns after ``act``; ``current`` is None for a chat not yet known."""
    chat = dict(CHAT_DEFAULTS if current is None else current)
    chat["chat_id"] = act.chat_id
    if act.line and not chat.get("line"):
        chat["line"] = act.line
    if act.recipients is not None and (act.recipients or not chat.get("recipients")):
        known = [r for r in (chat.get("recipients") or "").split(",") if r]
        merged = known + [r for r in act.recipients if r not in known]
        chat["recipients"] = ",".join(merged)
    if act.is_group is not None:
        chat["is_group"] = act.is_group
    if act.service and (chat.get("service") is None or not act.historical):
        chat["service"] = act.service
    chat["first_outbound_at"] = _min(chat.get("first_outbound_at"), act.outbound_at)
    chat["last_outbound_at"] = _max(chat.get("last_outbound_at"), act.outbound_at)
    previous_inbound = chat.get("last_inbound_at")
    chat["last_inbound_at"] = _max(previous_inbound, act.inbound_at)
    status = chat.get("status")
    if act.opted_out:
        if status not in (ChatStatus.gone,):
            chat["status"] = ChatStatus.opted_out
    elif (
        status == ChatStatus.opted_out
        and act.inbound_at is not None
        and (previous_inbound is None or act.inbound_at > previous_inbound)
    ):
        # A recipient who writes again after opting out has opted back in.
        chat["status"] = ChatStatus.active
    return chat
