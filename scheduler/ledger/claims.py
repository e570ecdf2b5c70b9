"""The claim protocol: at most one share per chat per day, across crashes and replicas.

1. ``claim_batch`` selects due chats by the ``next_share_at`` index, re-checks the rule, and
   for each due chat commits a ``started`` attempt (the intent record) and a lease *before*
   any HTTP call. The lease end becomes the chat's ``next_share_at``, so an in-flight chat
   leaves the due range, and comes back into it only if its owner dies.
2. ``record_results`` writes each outcome and recomputes ``next_share_at``, in one transaction.
3. A claim found expired (its owner crashed mid-call) is resolved as ``ambiguous`` and counts
   as shared: a missed day is cheap, a double share is spam.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.ledger.dialect import values_cte_update
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import (
    chats,
    compute_next,
    line_facts,
    select_chats_with_line,
)
from scheduler.ledger.facts import lines as Line_table
from scheduler.ledger.models import CardState, ChatStatus, Outcome, UTCDateTime, attempts_table
from scheduler.rule import LineFacts, Policy
from scheduler.share.decisions import Decision

attempts = attempts_table


@dataclass(frozen=True, slots=True)
class Claim:
    chat_id: str
    line: str | None
    attempt_id: int
    started_at: datetime
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What the calls of one claim did, and what it means."""

    claim: Claim
    decision: Decision
    finished_at: datetime
    tries: int
    http_status: int | None = None
    error_code: int | None = None
    trace_id: str | None = None
    latency_ms: float | None = None


@dataclass(slots=True)
class ClaimResult:
    claims: list[Claim]
    ambiguous: int = 0
    rescheduled: int = 0


_CHAT_UPDATE = (
    sa.update(chats)
    .where(chats.c.chat_id == sa.bindparam("b_chat_id"))
    .values(
        last_shared_at=sa.bindparam("b_last_shared_at"),
        share_count=sa.bindparam("b_share_count"),
        status=sa.bindparam("b_status"),
        not_before=sa.bindparam("b_not_before"),
        consecutive_failures=sa.bindparam("b_failures"),
        last_error=sa.bindparam("b_last_error"),
        next_share_at=sa.bindparam("b_next"),
        claimed_by=None,
        claim_attempt_id=None,
        claim_expires_at=None,
        updated_at=sa.bindparam("b_now"),
    )
)

_ATTEMPT_FINISH = (
    sa.update(attempts)
    .where(attempts.c.id == sa.bindparam("b_id"))
    .where(attempts.c.outcome == Outcome.started)
    .values(
        outcome=sa.bindparam("b_outcome"),
        finished_at=sa.bindparam("b_finished_at"),
        http_status=sa.bindparam("b_http_status"),
        error_code=sa.bindparam("b_error_code"),
        error_message=sa.bindparam("b_error_message"),
        trace_id=sa.bindparam("b_trace_id"),
        latency_ms=sa.bindparam("b_latency_ms"),
        tries=sa.bindparam("b_tries"),
    )
)


def _chat_params(row: Any, now: datetime, nxt: datetime | None, **changes: Any) -> dict[str, Any]:
    return {
        "b_chat_id": row.chat_id,
        "b_last_shared_at": changes.get("last_shared_at", row.last_shared_at),
        "b_share_count": changes.get("share_count", row.share_count),
        "b_status": changes.get("status", row.status),
        "b_not_before": changes.get("not_before", row.not_before),
        "b_failures": changes.get("consecutive_failures", row.consecutive_failures),
        "b_last_error": changes.get("last_error", row.last_error),
        "b_next": nxt,
        "b_now": now,
    }


def _lock(query: sa.Select[Any], conn: AsyncConnection) -> sa.Select[Any]:
    if conn.dialect.name == "postgresql":
        # Replicas skip each other's rows instead of waiting on them.
        return query.with_for_update(of=chats, skip_locked=True)
    return query


async def _resolve_ambiguous(
    conn: AsyncConnection, rows: Sequence[Any], policy: Policy, now: datetime
) -> int:
    """Resolve the open claims of ``rows`` (chats) as shared at their attempt's start."""
    if not rows:
        return 0
    ids = [row.claim_attempt_id for row in rows]
    found = await conn.execute(
        sa.select(attempts.c.id, attempts.c.started_at, attempts.c.outcome).where(
            attempts.c.id.in_(ids)
        )
    )
    by_id = {a.id: a for a in found}
    finish, updates = [], []
    for row in rows:
        attempt = by_id.get(row.claim_attempt_id)
        changes: dict[str, Any] = {}
        if attempt is not None and attempt.outcome == Outcome.started:
            finish.append(
                _finish_params(
                    attempt.id,
                    Outcome.ambiguous,
                    now,
                    tries=1,
                    error="claim expired without an outcome",
                )
            )
            shared_at = attempt.started_at
            if row.last_shared_at is None or row.last_shared_at < shared_at:
                changes = {"last_shared_at": shared_at, "share_count": row.share_count + 1}
        updates.append(_chat_params(row, now, compute_next(row, policy, now, **changes), **changes))
    if finish:
        await conn.execute(_ATTEMPT_FINISH, finish)
    await conn.execute(_CHAT_UPDATE, updates)
    return len(finish)


def _finish_params(
    attempt_id: int,
    outcome: Outcome,
    finished_at: datetime,
    *,
    tries: int,
    http_status: int | None = None,
    error_code: int | None = None,
    error: str | None = None,
    trace_id: str | None = None,
    latency_ms: float | None = None,
) -> dict[str, Any]:
    return {
        "b_id": attempt_id,
        "b_outcome": outcome,
        "b_finished_at": finished_at,
        "b_http_status": http_status,
        "b_error_code": error_code,
        "b_error_message": error,
        "b_trace_id": trace_id,
        "b_latency_ms": latency_ms,
        "b_tries": tries,
    }


async def _new_attempt_ids(conn: AsyncConnection, count: int) -> list[int]:
    """Reserve ids for ``count`` intent rows, so that one multi-row INSERT needs no RETURNING."""
    if conn.dialect.name == "postgresql":
        rows = await conn.execute(
            sa.text("SELECT nextval('share_attempts_id_seq') FROM generate_series(1, :n)"),
            {"n": count},
        )
        return [int(r[0]) for r in rows]
    # SQLite: this transaction holds the write lock, so max(id) cannot move under us.
    top = (await conn.execute(sa.select(sa.func.max(attempts.c.id)))).scalar()
    start = int(top or 0) + 1
    return list(range(start, start + count))


async def claim_batch(
    ledger: Ledger,
    *,
    now: datetime,
    limit: int,
    instance: str,
    lease: timedelta,
    policy: Policy,
    chat_ids: Iterable[str] | None = None,
    force: bool = False,
) -> ClaimResult:
    """Claim up to ``limit`` due chats (or the named ones) for this instance."""
    lease_end = now + lease
    async with ledger.write() as conn:
        query = select_chats_with_line()
        if chat_ids is not None:
            query = query.where(chats.c.chat_id.in_(list(chat_ids)))
        else:
            query = (
                query.where(chats.c.next_share_at <= now)
                .order_by(chats.c.next_share_at)
                .limit(limit)
            )
        rows = (await conn.execute(_lock(query, conn))).all()
        due, expired, reschedule = [], [], []
        for row in rows:
            if row.claim_attempt_id is not None:
                if row.claim_expires_at is not None and row.claim_expires_at > now:
                    continue  # live claim of another pass (only reachable with chat_ids)
                expired.append(row)
                continue
            if force:
                due.append(row)
                continue
            nxt = compute_next(row, policy, now)
            if nxt is not None and nxt <= now:
                due.append(row)
            elif nxt != row.next_share_at:
                reschedule.append({"b_chat_id": row.chat_id, "b_next": nxt})
        result = ClaimResult(claims=[])
        result.ambiguous = await _resolve_ambiguous(conn, expired, policy, now)
        if reschedule:
            await conn.execute(
                sa.update(chats)
                .where(chats.c.chat_id == sa.bindparam("b_chat_id"))
                .values(next_share_at=sa.bindparam("b_next")),
                reschedule,
            )
            result.rescheduled = len(reschedule)
        if not due:
            return result
        ids = await _new_attempt_ids(conn, len(due))
        await conn.execute(
            sa.insert(attempts),
            [
                {
                    "id": aid,
                    "chat_id": row.chat_id,
                    "line": row.line,
                    "started_at": now,
                    "outcome": Outcome.started,
                    "instance": instance,
                    "tries": 0,
                    "forced": force,
                }
                for row, aid in zip(due, ids, strict=True)
            ],
        )
        attempt_of = {row.chat_id: aid for row, aid in zip(due, ids, strict=True)}
        await conn.execute(
            values_cte_update(
                "chats",
                "chat_id",
                [("chat_id", sa.String()), ("claim_attempt_id", sa.BigInteger())],
                list(attempt_of.items()),
                constants={
                    "claimed_by": (instance, sa.String()),
                    "claim_expires_at": (lease_end, UTCDateTime()),
                    "next_share_at": (lease_end, UTCDateTime()),
                },
            )
        )
        result.claims = [
            Claim(row.chat_id, row.line, attempt_of[row.chat_id], now, row.consecutive_failures)
            for row in due
        ]
        return result


async def record_results(
    ledger: Ledger, records: Sequence[CallRecord], policy: Policy, now: datetime
) -> list[CallRecord]:
    """Write outcomes and recompute next_share_at; return the records whose claim was lost."""
    if not records:
        return []
    lost: list[CallRecord] = []
    async with ledger.write() as conn:
        rows = {
            row.chat_id: row
            for row in await conn.execute(
                select_chats_with_line().where(
                    chats.c.chat_id.in_([r.claim.chat_id for r in records])
                )
            )
        }
        line_overrides: dict[str, LineFacts] = {}
        for rec in records:
            d = rec.decision
            if d.line_card_state is not None and rec.claim.line is not None:
                await conn.execute(
                    sa.update(Line_table)
                    .where(Line_table.c.number == rec.claim.line)
                    .values(
                        card_state=d.line_card_state,
                        card_state_since=now,
                        last_error=d.line_error,
                        updated_at=now,
                    )
                )
                # The line's other chats stop until the card is seen active again.
                await conn.execute(
                    sa.update(chats)
                    .where(chats.c.line == rec.claim.line)
                    .where(chats.c.claim_attempt_id.is_(None))
                    .values(next_share_at=None)
                )
                row = rows.get(rec.claim.chat_id)
                line_overrides[rec.claim.line] = line_facts(
                    d.line_card_state,
                    row.line_paused if row is not None else False,
                    row.line_timezone if row is not None else None,
                )
        finish, updates = [], []
        for rec in records:
            d = rec.decision
            finish.append(
                _finish_params(
                    rec.claim.attempt_id,
                    d.outcome,
                    rec.finished_at,
                    tries=rec.tries,
                    http_status=rec.http_status,
                    error_code=rec.error_code,
                    error=d.error,
                    trace_id=rec.trace_id,
                    latency_ms=rec.latency_ms,
                )
            )
            row = rows.get(rec.claim.chat_id)
            if row is None or row.claim_attempt_id != rec.claim.attempt_id:
                lost.append(rec)
                continue
            changes: dict[str, Any] = {"last_error": d.error}
            if d.counts_as_shared:
                shared_at = rec.finished_at if d.outcome == Outcome.shared else rec.claim.started_at
                changes.update(
                    last_shared_at=max(shared_at, row.last_shared_at or shared_at),
                    share_count=row.share_count + 1,
                    consecutive_failures=0,
                    not_before=None,
                )
            if d.failed:
                changes["consecutive_failures"] = row.consecutive_failures + 1
            if d.not_before is not None:
                changes["not_before"] = d.not_before
            if d.chat_status is not None:
                changes["status"] = d.chat_status
            line = line_overrides.get(row.line) if row.line else None
            nxt = compute_next(row, policy, now, line=line, **changes)
            updates.append(_chat_params(row, now, nxt, **changes))
        # Conditional on outcome='started': a claim already resolved elsewhere keeps its verdict.
        await conn.execute(_ATTEMPT_FINISH, finish)
        if updates:
            await conn.execute(_CHAT_UPDATE, updates)
    return lost


async def release_claims(
    ledger: Ledger, claims: Sequence[Claim], policy: Policy, now: datetime
) -> None:
    """Give back claims whose call never started (shutdown): nothing was sent."""
    if not claims:
        return
    async with ledger.write() as conn:
        await conn.execute(
            _ATTEMPT_FINISH,
            [
                _finish_params(
                    c.attempt_id,
                    Outcome.skipped,
                    now,
                    tries=0,
                    error="released before the call (shutdown)",
                )
                for c in claims
            ],
        )
        rows = (
            await conn.execute(
                select_chats_with_line().where(chats.c.chat_id.in_([c.chat_id for c in claims]))
            )
        ).all()
        mine = {c.chat_id: c.attempt_id for c in claims}
        updates = [
            _chat_params(row, now, compute_next(row, policy, now))
            for row in rows
            if row.claim_attempt_id == mine.get(row.chat_id)
        ]
        if updates:
            await conn.execute(_CHAT_UPDATE, updates)


async def resolve_dangling(
    ledger: Ledger, *, now: datetime, lease: timedelta, policy: Policy
) -> int:
    """Resolve every claim whose lease ran out without an outcome (crashed owner)."""
    total = 0
    while True:
        async with ledger.write() as conn:
            query = (
                select_chats_with_line()
                .where(chats.c.claim_attempt_id.is_not(None))
                .where(chats.c.claim_expires_at <= now)
                .limit(500)
            )
            rows = (await conn.execute(_lock(query, conn))).all()
            total += await _resolve_ambiguous(conn, rows, policy, now)
            # Attempts left 'started' whose chat moved on (should not happen) are closed too.
            await conn.execute(
                sa.update(attempts)
                .where(attempts.c.outcome == Outcome.started)
                .where(attempts.c.started_at < now - lease)
                .where(~sa.exists().where(chats.c.claim_attempt_id == attempts.c.id))
                .values(
                    outcome=Outcome.ambiguous,
                    finished_at=now,
                    error_message="attempt left open without a claim",
                )
            )
        if len(rows) < 500:
            return total


__all__ = [
    "CallRecord",
    "CardState",
    "ChatStatus",
    "Claim",
    "ClaimResult",
    "claim_batch",
    "record_results",
    "release_claims",
    "resolve_dangling",
]
