"""``share now CHAT_ID``: one share on the operator's request, through the pass's own path.

Without ``force`` the sharing rule decides, as it would in a pass: a chat already shared on
its current day (or otherwise not due) is refused with the reason. ``force`` overrides the
rule — the day, the window, the intervals, pauses — and is recorded on the attempt
(``share_attempts.forced``). Even forced, a chat that opted out or is gone, or whose line has
no active card, is refused: Linq would reject the call, and an opt-out is the recipient's word.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog

from scheduler import clock
from scheduler.config import Schedule
from scheduler.core.rule import Policy, ineligible_reason, share_day, zone_for
from scheduler.ledger.claims import claim_batch
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import (
    chat_facts,
    chats,
    compute_next,
    line_facts_of,
)
from scheduler.ledger.queries import get_chat_with_line
from scheduler.linq.client import LinqClient
from scheduler.metrics import Metrics
from scheduler.share.share_pass import SharePass

__all__ = ["FORCE_CANNOT_OVERRIDE", "ManualShare", "cli_instance_id", "share_now"]

log = structlog.get_logger("scheduler.share")

# Reasons that --force does not override.
FORCE_CANNOT_OVERRIDE = frozenset({"opted_out", "blocked", "gone", "card_inactive", "no_outbound"})


@dataclass
class ManualShare:
    chat_id: str
    line: str | None
    forced: bool
    outcome: str | None = None
    refused: str | None = None
    detail: str = ""
    attempt_id: int | None = None
    http_status: int | None = None
    error_code: int | None = None
    trace_id: str | None = None
    next_share_at: datetime | None = None

    @property
    def shared(self) -> bool:
        return self.outcome == "shared"

    def as_dict(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "line": self.line,
            "forced": self.forced,
            "outcome": self.outcome,
            "refused": self.refused,
            "detail": self.detail,
            "attempt_id": self.attempt_id,
            "http_status": self.http_status,
            "error_code": self.error_code,
            "trace_id": self.trace_id,
            "next_share_at": self.next_share_at,
        }


def cli_instance_id() -> str:
    """Names the command-line process in the audit trail, apart from any daemon."""
    return f"cli-{socket.gethostname()}-{os.getpid()}"


def _refusal(row: Any, policy: Policy, now: datetime, force: bool) -> tuple[str, str] | None:
    if row.claim_attempt_id is not None and (
        row.claim_expires_at is None or row.claim_expires_at > now
    ):
        return "in_flight", f"a share of this chat is in flight (claimed by {row.claimed_by})"
    chat, line = chat_facts(row), line_facts_of(row)
    reason = ineligible_reason(chat, line, policy, now)
    if reason is not None and (not force or reason in FORCE_CANNOT_OVERRIDE):
        hint = "" if reason in FORCE_CANNOT_OVERRIDE else "; --force shares anyway"
        return reason, f"the chat is not eligible ({reason}){hint}"
    if force:
        return None
    if row.last_shared_at is not None:
        zone = zone_for(chat, line, policy)
        day = share_day(now, zone, policy)
        if share_day(row.last_shared_at, zone, policy) == day:
            return (
                "already_shared_today",
                f"already shared on {day} ({zone.key}) at {row.last_shared_at.isoformat()}; "
                "--force shares again",
            )
    nxt = compute_next(row, policy, now)
    if nxt != now:
        when = nxt.isoformat() if nxt is not None else "never under the current facts"
        return "not_due", f"not due now (next due: {when}); --force shares anyway"
    return None


async def share_now(
    ledger: Ledger,
    client: LinqClient,
    schedule: Schedule,
    policy: Policy,
    chat_id: str,
    *,
    force: bool,
    instance: str | None = None,
    metrics: Metrics | None = None,
) -> ManualShare:
    instance = instance or cli_instance_id()
    now = clock.now()
    row = await get_chat_with_line(ledger, chat_id)
    result = ManualShare(chat_id=chat_id, line=row.line, forced=force)
    bound = {"chat_id": chat_id, "line": row.line, "forced": force}
    refusal = _refusal(row, policy, now, force)
    if refusal is None:
        claimed = await claim_batch(
            ledger,
            now=now,
            limit=1,
            instance=instance,
            lease=schedule.share_pass.lease,
            policy=policy,
            chat_ids=[chat_id],
            force=force,
        )
        if not claimed.claims:
            # A pass claimed or shared it between the check and the claim.
            refusal = ("changed", "the chat was claimed or changed meanwhile; try again")
    if refusal is not None:
        result.refused, result.detail = refusal
        log.warning("share.manual_refused", reason=result.refused, **bound)
        return result
    claim = claimed.claims[0]
    sharer = SharePass(
        ledger=ledger,
        client=client,
        config=schedule.share_pass,
        policy=policy,
        instance=instance,
        metrics=metrics,
    )
    pass_id = f"manual-{uuid.uuid4().hex[:8]}"
    record, kept = await sharer.share_claim(claim, pass_id=pass_id)
    result.attempt_id = claim.attempt_id
    result.outcome = str(record.decision.outcome)
    result.http_status = record.http_status
    result.error_code = record.error_code
    result.trace_id = record.trace_id
    result.detail = record.decision.error or ("shared" if kept else "claim lost")
    async with ledger.read() as conn:
        result.next_share_at = (
            await conn.execute(sa.select(chats.c.next_share_at).where(chats.c.chat_id == chat_id))
        ).scalar_one_or_none()
    log.info(
        "share.manual",
        outcome=result.outcome,
        attempt_id=claim.attempt_id,
        pass_id=pass_id,
        trace_id=record.trace_id,
        **bound,
    )
    return result
