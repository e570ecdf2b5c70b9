"""What one piece of Linq activity says about a chat or a line, as plain records.

Webhooks, backfill pages and ``ledger import`` rows all become these; the merge
(:mod:`scheduler.core.merge`) and the ledger apply them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ChatActivity:
    chat_id: str
    line: str | None = None
    recipients: tuple[str, ...] | None = None
    is_group: bool | None = None
    # The chat's own service (a chat object's ``service``).
    service: str | None = None
    # The service one message went over: proof of iMessage only, never of SMS.
    message_service: str | None = None
    # Members who left a group (participant.removed).
    removed_recipients: tuple[str, ...] | None = None
    outbound_at: datetime | None = None
    inbound_at: datetime | None = None
    opted_out: bool = False
    # When the recipient opted out (health_status.updated_at, or the STOP message's time).
    opted_out_at: datetime | None = None
    historical: bool = False


@dataclass(frozen=True, slots=True)
class LineStatus:
    """A ``phone_number.status_updated``: whether the line may deliver, as of ``changed_at``."""

    line: str
    status: str
    reputation: str
    changed_at: datetime

    @property
    def eligible(self) -> bool:
        # FLAGGED, or a CRITICAL reputation, means Linq refuses activity on the line (2027).
        return self.status == "ACTIVE" and self.reputation != "CRITICAL"
