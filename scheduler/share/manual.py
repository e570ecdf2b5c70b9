"""``share now CHAT_ID``: one share on the operator's request, through the pass's own path.

Without ``force`` the sharing rule decides, as it would in a pass: a chat already shared on
its current day (or otherwise not due) is refused with the reason. ``force`` overrides the
rule — the day, the window, the intervals, pauses — and is recorded on the attempt
(``share_attempts.forced``). Even forced, a chat that opted out or is gone, or whose line has
no active card, is refused: Linq would reject the call, and an opt-out is the recipient's word.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from scheduler import clock
from scheduler.config import Schedule
from scheduler.core.chat import CallRecord, ChatState, Claim
from scheduler.core.rule import Policy, ineligible_reason, share_day, zone_for
from scheduler.errors import NotFound
from scheduler.ledger.claims import chat_state, claim_batch
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chat_facts, compute_next, line_facts_of
from scheduler.linq.client import LinqClient
from scheduler.metrics import Metrics
from scheduler.share.limiter import RateLimiter
from scheduler.share.share_pass import OutcomeWriter, ShareCaller, observe_outcome

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


def _refusal(row: ChatState, policy: Policy, now: datetime, force: bool) -> tuple[str, str] | None:
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
    row = await chat_state(ledger, chat_id)
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
    pass_id = f"manual-{uuid.uuid4().hex[:8]}"
    record, kept = await _call_and_record(
        ledger, client, schedule, policy, claim, pass_id=pass_id, metrics=metrics or Metrics()
    )
    result.attempt_id = claim.attempt_id
    result.outcome = str(record.decision.outcome)
    result.http_status = record.http_status
    result.error_code = record.error_code
    result.trace_id = record.trace_id
    result.detail = record.decision.error or ("shared" if kept else "claim lost")
    with contextlib.suppress(NotFound):  # removed meanwhile: nothing is due
        result.next_share_at = (await chat_state(ledger, chat_id)).next_share_at
    log.info(
        "share.manual",
        outcome=result.outcome,
        attempt_id=claim.attempt_id,
        pass_id=pass_id,
        trace_id=record.trace_id,
        **bound,
    )
    return result


async def _call_and_record(
    ledger: Ledger,
    client: LinqClient,
    schedule: Schedule,
    policy: Policy,
    claim: Claim,
    *,
    pass_id: str,
    metrics: Metrics,
) -> tuple[CallRecord, bool]:
    """The pass's call and record steps for one claim: retries, the decision table, metrics,
    the share.* events and one outcome transaction. Returns the record and whether the claim
    was still ours."""
    config = schedule.share_pass
    caller = ShareCaller(
        client,
        config,
        limiter=RateLimiter(config.requests_per_second, burst=config.concurrency),
        metrics=metrics,
        rng=random.Random(),
        stopping=asyncio.Event(),
    )
    writer = OutcomeWriter(ledger, policy, patience=config.lease.total_seconds() / 2)
    cut_short: list[CallRecord] = []
    with structlog.contextvars.bound_contextvars(pass_id=pass_id):
        try:
            record = await caller.call(claim, on_cut_short=cut_short.append)
        finally:
            # Only a call cut short leaves its (ambiguous) record here.
            if cut_short:
                await writer.write(cut_short)
        observe_outcome(record, metrics)
        lost = await writer.write([record])
    return record, not lost
