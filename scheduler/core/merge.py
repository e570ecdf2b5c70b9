"""Merging activity into what the ledger knows of a chat. Pure code.

Events arrive late, twice and out of order: first times take the minimum, last times the
maximum, and nothing a stale event says overwrites fresher knowledge.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from scheduler.core.event import ChatActivity
from scheduler.core.status import ChatStatus
from scheduler.times import earliest, latest


class MergedChat(NamedTuple):
    """The facts of a chat that its activity decides (webhooks, backfill, import).

    The ledger reads them from the chat's row, merges activity in, and writes back only the
    columns that changed; the columns activity never decides (claims, failures, the next share)
    stay the ledger's own. A named tuple, like the claim's ``ChatState``: one is built per
    event on the webhook path.
    """

    chat_id: str
    line: str | None = None
    recipients: str = ""
    is_group: bool = False
    service: str | None = None
    first_outbound_at: datetime | None = None
    last_outbound_at: datetime | None = None
    last_inbound_at: datetime | None = None
    last_shared_at: datetime | None = None
    share_count: int = 0
    status: ChatStatus = ChatStatus.active
    # Not a column: the latest opt-out the merged activities reported, which the ledger
    # records on the recipient (account-wide).
    opted_out_seen_at: datetime | None = None


def merge_activity(current: MergedChat | None, act: ChatActivity) -> MergedChat:
    """The chat after ``act``; ``current`` is None for a chat not yet known.

    Applying the same activities in any order, any number of times, gives the same chat;
    except for a member both added and removed (participant events), where the later-applied
    one wins.
    """
    chat = MergedChat(act.chat_id) if current is None else current
    recipients = chat.recipients
    if act.recipients or act.removed_recipients:
        known = {r for r in recipients.split(",") if r}
        known = known.union(act.recipients or ()).difference(act.removed_recipients or ())
        # Sorted, so that the first recipient (whose number may pick the time zone) does not
        # depend on which event arrived first.
        recipients = ",".join(sorted(known))
    service = chat.service
    if act.service and (service is None or not act.historical):
        service = act.service
    elif (
        service is None
        and act.message_service is not None
        and act.message_service.lower() == "imessage"
    ):
        # A message sent over iMessage proves the chat is one; an SMS message proves nothing
        # (Apple downgrades single messages), so it never sets the chat's service.
        service = act.message_service
    inbound = act.inbound_at
    opted_out_seen_at = chat.opted_out_seen_at
    if act.opted_out and act.opted_out_at is not None:
        # Opting out is the recipient writing STOP: an inbound message at that time.
        inbound = latest(inbound, act.opted_out_at)
        opted_out_seen_at = latest(opted_out_seen_at, act.opted_out_at)
    return MergedChat(
        act.chat_id,
        chat.line or act.line or None,
        recipients,
        chat.is_group if act.is_group is None else act.is_group,
        service,
        earliest(chat.first_outbound_at, act.outbound_at),
        latest(chat.last_outbound_at, act.outbound_at),
        latest(chat.last_inbound_at, inbound),
        chat.last_shared_at,
        chat.share_count,
        _status(chat.status, act, chat.last_inbound_at),
        opted_out_seen_at,
    )


def _status(status: ChatStatus, act: ChatActivity, previous_inbound: datetime | None) -> ChatStatus:
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
