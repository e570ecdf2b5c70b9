"""The claim protocol: at most one share per chat per day, across crashes and replicas.

1. ``claim_batch`` claims due chats before any HTTP call: it reads them by the
   ``next_share_at`` index (soonest first), the rule re-checks them, and it writes the intent
   of each due chat on the chat -- the claim columns (``claimed_by``, ``claim_attempt_id`` --
   an attempt id reserved without writing a row -- ``claim_started_at``, ``claim_forced``)
   and the lease (``claim_expires_at``) -- in one transaction. On PostgreSQL the read and the
   claim are one statement, returning the facts as read; the rule then gives back, with its
   ``next_share_at`` corrected, a chat it finds not due after all (its facts changed without a
   recompute, or the policy did). The claim leaves ``next_share_at`` as it was: no indexed
   column changes, so on PostgreSQL it is a HOT update (no new index entries). An in-flight
   chat stays in the due range; the due query leaves it out by its live claim
   (``NOT_CLAIMED``), and reads it again only once the lease has run out (its owner died):
   it is not claimed then but resolved (3.).
2. ``record_results`` writes each attempt's row, whole, with its outcome (``started_at`` from
   the claim), clears the claim and recomputes ``next_share_at``, in one transaction.
3. A claim found expired (its owner crashed mid-call) is written from the chat's claim columns
   as an ``ambiguous`` attempt and counts as shared at its start: a missed day is cheap, a
   double share is spam. Every claim lies in the due range (a chat claimed by name is brought
   into it), so the due query finds every expired claim: no sweep of the whole table, which
   the claim columns (unindexed, to keep the claim HOT) would make a sequential scan.

Every attempt is audited by one row, written once; an attempt in flight is the chat's claim
(readers of in-flight attempts read the claim columns). An attempt row's id is its claim's:
a result whose claim was meanwhile resolved as ambiguous elsewhere finds its id taken and
leaves that verdict alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.chat import (
    AttemptRow,
    CallRecord,
    ChatState,
    ChatUpdate,
    Claim,
    ClaimResult,
)
from scheduler.core.rule import LineFacts, Policy
from scheduler.core.status import CardState, ChatStatus, Outcome
from scheduler.errors import NotFound
from scheduler.ledger.claim_sql import ClaimSQL
from scheduler.ledger.dialects import LedgerDialect
from scheduler.ledger.driver import Statement
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, compute_next, line_facts
from scheduler.ledger.facts import lines as Line_table
from scheduler.ledger.line_eligibility import hold_probe, mark_line_eligible, mark_line_ineligible
from scheduler.ledger.models import attempts_table
from scheduler.ledger.recipients import RecipientFacts, one_to_one_handle, record_recipient_facts

attempts = attempts_table
log = structlog.get_logger("scheduler.share")


def _chat_update(row: ChatState, nxt: datetime | None, **changes: Any) -> ChatUpdate:
    return ChatUpdate(
        chat_id=row.chat_id,
        last_shared_at=changes.get("last_shared_at", row.last_shared_at),
        share_count=changes.get("share_count", row.share_count),
        status=changes.get("status", row.status),
        not_before=changes.get("not_before", row.not_before),
        consecutive_failures=changes.get("consecutive_failures", row.consecutive_failures),
        last_error=changes.get("last_error", row.last_error),
        next_share_at=nxt,
    )


def _claim_start(row: ChatState, now: datetime) -> datetime:
    """When ``row``'s open claim began. A claim made by the previous release (a rolling update
    runs both versions) has no ``claim_started_at``, only its ``started`` attempt row, which
    keeps its own start time: the lease's end stands in for the chat's last share (on or
    before ``now``, since the claim expired), so its day still counts as shared."""
    if row.claim_started_at is not None:
        return row.claim_started_at
    return min(row.claim_expires_at or now, now)


def _expired_attempt(row: ChatState, now: datetime, outcome: Outcome, error: str) -> AttemptRow:
    """The attempt of ``row``'s open claim, closed as ``outcome``, from its claim columns."""
    assert row.claim_attempt_id is not None
    return AttemptRow(
        row.claim_attempt_id,
        row.chat_id,
        row.line,
        _claim_start(row, now),
        row.claimed_by or "",
        bool(row.claim_forced),
        outcome,
        now,
        tries=1 if outcome == Outcome.ambiguous else 0,
        error_message=error,
    )


async def _resolve_ambiguous(
    sql: ClaimSQL, rows: Sequence[ChatState], policy: Policy, now: datetime
) -> int:
    """Resolve the open claims of ``rows`` (chats) as shared at their claim's start."""
    if not rows:
        return 0
    ambiguous, updates = [], []
    for row in rows:
        changes: dict[str, Any] = {}
        ambiguous.append(
            _expired_attempt(row, now, Outcome.ambiguous, "claim expired without an outcome")
        )
        shared_at = _claim_start(row, now)
        if row.last_shared_at is None or row.last_shared_at < shared_at:
            changes = {"last_shared_at": shared_at, "share_count": row.share_count + 1}
        updates.append(_chat_update(row, compute_next(row, policy, now, **changes), **changes))
    await sql.run(_outcome_writes(sql.dialect, ambiguous, updates, now))
    return len(ambiguous)


async def chat_state(ledger: Ledger, chat_id: str) -> ChatState:
    """One chat's facts and its line's, as the claim reads them."""
    async with ledger.read() as conn:
        sql = await ClaimSQL.open(conn)
        found = await sql.chats([chat_id])
    if not found:
        raise NotFound(f"no chat {chat_id!r} in the ledger")
    return found[0]


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
    async with ledger.write() as conn:
        sql = await ClaimSQL.open(conn)
        if chat_ids is None:
            return await _claim_due(sql, [], now, limit, instance, lease, policy)
        rows = await sql.chats(list(chat_ids), lock=True)
        result = await _claim_rows(sql, rows, now, instance, lease, policy, force=force)
        await _into_due_range(conn, [c.chat_id for c in result.claims], now)
        return result


async def _into_due_range(conn: AsyncConnection, chat_ids: Sequence[str], now: datetime) -> None:
    """Chats claimed by name (``share now``), not because they were due: their
    ``next_share_at`` brought to ``now`` at the latest, so that the claim lies in the due
    range as every other does. Were its owner to die mid-call, the due query finds the
    expired claim there and resolves it; no sweep of the whole table is needed. (The outcome,
    or the release, recomputes ``next_share_at`` as always.)"""
    if chat_ids:
        await conn.execute(
            sa.update(chats)
            .where(chats.c.chat_id.in_(chat_ids))
            .where(sa.or_(chats.c.next_share_at.is_(None), chats.c.next_share_at > now))
            .values(next_share_at=now)
        )


async def record_and_claim(
    ledger: Ledger,
    records: Sequence[CallRecord],
    *,
    now: datetime,
    limit: int,
    instance: str,
    lease: timedelta,
    policy: Policy,
) -> tuple[list[CallRecord], ClaimResult]:
    """``record_results`` of ``records`` then ``claim_batch`` of up to ``limit`` due chats, in
    one transaction: a busy pass commits once per batch of calls instead of twice (and on
    SQLite its outcomes and its claims no longer take turns at the one write lock). Returns the
    records whose claim was lost, and the claims.

    Two trips to the database: the recorded chats; their writes with the due chats' claim (on
    SQLite, whose trips are calls into its thread, the due read and the claim are two). The
    due chats are read (and on PostgreSQL locked) after the outcomes' writes, which may wait
    on another writer's rows: this transaction then holds no other row lock, as when the two
    ran apart."""
    async with ledger.write() as conn:
        sql = await ClaimSQL.open(conn)
        rows, written, updates, lost = await _outcomes(sql, records, policy, now)
        facts = _recipient_facts(records, rows)
        writes = _outcome_writes(sql.dialect, written, updates, now)
        if facts:
            # The recipients' other chats follow before the due chats are read.
            await sql.run(writes)
            await record_recipient_facts(conn, facts, policy, now)
            writes = []
        return lost, await _claim_due(sql, writes, now, limit, instance, lease, policy)


async def _claim_due(
    sql: ClaimSQL,
    writes: list[Statement],
    now: datetime,
    limit: int,
    instance: str,
    lease: timedelta,
    policy: Policy,
) -> ClaimResult:
    """Claim up to ``limit`` due chats, after ``writes`` and in the same trip. Where one
    statement reads and claims (PostgreSQL), the rule re-checks the chats claimed and gives
    back those not due after all; elsewhere it re-checks the chats read, and the due ones are
    claimed by their ids."""
    if sql.dialect.claims_as_it_reads:
        claim = sql.dialect.claim_due(now, limit, instance=instance, lease_end=now + lease)
        taken = sql.taken((await sql.run([*writes, claim]))[-1])
        return await _keep_due(sql, taken, now, instance, lease, policy)
    rows = sql.states((await sql.run([*writes, sql.dialect.due(now, limit)]))[-1:])
    return await _claim_rows(sql, rows, now, instance, lease, policy, force=False)


def _next_or_probe(
    row: ChatState, policy: Policy, now: datetime, lease: timedelta, probes: dict[str, datetime]
) -> datetime | None:
    """``row``'s next share by the rule, now. An ineligible line gets one share (its probe)
    per backoff: the first of its chats found due takes it (``probes`` records the line's
    hold until then); its other chats wait for the hold's end."""
    nxt = compute_next(row, policy, now)
    if nxt is not None and nxt <= now and row.line and row.line_probe_at is not None:
        if row.line in probes:
            return probes[row.line]
        probes[row.line] = now + lease
    return nxt


async def _settle(
    sql: ClaimSQL,
    expired: Sequence[ChatState],
    probes: dict[str, datetime],
    reschedule: Sequence[tuple[str, datetime | None]],
    policy: Policy,
    now: datetime,
) -> ClaimResult:
    """Write what a claim found besides its claims (rare): expired claims resolved, probes'
    holds, chats not due after all rescheduled (their claim, if taken, dropped)."""
    result = ClaimResult(claims=[])
    result.ambiguous = await _resolve_ambiguous(sql, expired, policy, now)
    for number, until in probes.items():
        await hold_probe(sql.conn, number, until)
    if reschedule:
        await sql.reschedule(reschedule)
        result.rescheduled = len(reschedule)
    return result


async def _keep_due(
    sql: ClaimSQL,
    taken: Sequence[tuple[ChatState, int | None]],
    now: datetime,
    instance: str,
    lease: timedelta,
    policy: Policy,
) -> ClaimResult:
    """Of the chats ``LedgerDialect.claim_due`` read and claimed in this transaction: keep the
    claims the rule finds due, give back the others (``next_share_at`` corrected), resolve the
    expired claims it read and left."""
    expired: list[ChatState] = []
    reschedule: list[tuple[str, datetime | None]] = []
    probes: dict[str, datetime] = {}
    claims: list[Claim] = []
    for row, attempt_id in taken:
        if attempt_id is None:
            expired.append(row)
            continue
        nxt = _next_or_probe(row, policy, now, lease, probes)
        if nxt is not None and nxt <= now:
            claims.append(_claim_of(row, attempt_id, now, instance, forced=False))
        else:
            reschedule.append((row.chat_id, nxt))
    result = await _settle(sql, expired, probes, reschedule, policy, now)
    result.claims = claims
    return result


async def _claim_rows(
    sql: ClaimSQL,
    rows: Sequence[ChatState],
    now: datetime,
    instance: str,
    lease: timedelta,
    policy: Policy,
    *,
    force: bool,
) -> ClaimResult:
    """Claim those of ``rows`` (read, and where the database has row locks locked, in this
    transaction) the rule finds due, or all but those under a live claim when ``force``."""
    due: list[ChatState] = []
    expired: list[ChatState] = []
    reschedule: list[tuple[str, datetime | None]] = []
    probes: dict[str, datetime] = {}
    for row in rows:
        if row.claim_attempt_id is not None:
            if row.claim_expires_at is not None and row.claim_expires_at > now:
                continue  # live claim of another pass (only reachable with chat_ids)
            expired.append(row)
            continue
        if force:
            due.append(row)
            continue
        nxt = _next_or_probe(row, policy, now, lease, probes)
        if nxt is not None and nxt <= now:
            due.append(row)
        elif nxt != row.next_share_at:
            reschedule.append((row.chat_id, nxt))
    result = await _settle(sql, expired, probes, reschedule, policy, now)
    attempt_of = await sql.claim(
        due, now=now, instance=instance, lease_end=now + lease, forced=force
    )
    result.claims = [
        _claim_of(row, attempt_of[row.chat_id], now, instance, forced=force)
        for row in due
        if row.chat_id in attempt_of
    ]
    return result


def _claim_of(
    row: ChatState, attempt_id: int, now: datetime, instance: str, *, forced: bool
) -> Claim:
    """The claim taken on ``row`` in this transaction, as the pass carries it to the call."""
    return Claim(row.chat_id, row.line, attempt_id, now, row.consecutive_failures, instance, forced)


async def record_results(
    ledger: Ledger, records: Sequence[CallRecord], policy: Policy, now: datetime
) -> list[CallRecord]:
    """Write outcomes and recompute next_share_at; return the records whose claim was lost."""
    if not records:
        return []
    async with ledger.write() as conn:
        sql = await ClaimSQL.open(conn)
        rows, written, updates, lost = await _outcomes(sql, records, policy, now)
        await sql.run(_outcome_writes(sql.dialect, written, updates, now))
        # After the chats' own updates: the recipient's other chats (other lines) follow.
        await record_recipient_facts(conn, _recipient_facts(records, rows), policy, now)
        return lost


async def _outcomes(
    sql: ClaimSQL, records: Sequence[CallRecord], policy: Policy, now: datetime
) -> tuple[dict[str, ChatState], list[AttemptRow], list[ChatUpdate], list[CallRecord]]:
    """Read the chats of ``records`` and decide what their outcomes write: the chats as read,
    the attempt rows, the chats' updates, and the records whose claim was lost. Writes only
    what the answers say of the lines (rare: a card gone, a line refused or eligible again)."""
    if not records:
        return {}, [], [], []
    lost: list[CallRecord] = []
    rows = {row.chat_id: row for row in await sql.chats([r.claim.chat_id for r in records])}
    line_overrides = await _record_line_facts(sql.conn, records, rows, now)
    written, updates = [], []
    for rec in records:
        d = rec.decision
        written.append(
            AttemptRow(
                rec.claim.attempt_id,
                rec.claim.chat_id,
                rec.claim.line,
                rec.claim.started_at,
                rec.claim.instance,
                rec.claim.forced,
                d.outcome,
                rec.finished_at,
                tries=rec.tries,
                http_status=rec.http_status,
                error_code=rec.error_code,
                error_message=d.error,
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
        updates.append(_chat_update(row, nxt, **changes))
    return rows, written, updates, lost


def _outcome_writes(
    dialect: LedgerDialect, written: list[AttemptRow], updates: list[ChatUpdate], now: datetime
) -> list[Statement]:
    """The outcomes' statements: every record is audited, lost claims too; an id already
    written (the claim resolved as ambiguous elsewhere) keeps its verdict. The chats first,
    as the resolution of expired claims does: both lock the chat row before the attempt's id,
    so a late result and a takeover of its claim wait on each other, never deadlock."""
    statements = [dialect.update_chats(updates, now)] if updates else []
    if written:
        statements.append(dialect.insert_attempts(written))
    return statements


def _recipient_facts(
    records: Sequence[CallRecord], rows: dict[str, ChatState]
) -> list[RecipientFacts]:
    """Opt-outs (2024) and blocks (2026) learnt from the answers, for 1:1 chats."""
    facts = []
    for rec in records:
        d = rec.decision
        row = rows.get(rec.claim.chat_id)
        if row is None or not (d.recipient_opted_out or d.recipient_blocked):
            continue
        handle = one_to_one_handle(row.recipients, row.is_group)
        if handle is None:
            continue  # group chats are never opted out or blocked as a whole
        at = rec.finished_at
        facts.append(
            RecipientFacts(
                handle,
                opted_out_at=at if d.recipient_opted_out else None,
                blocked_at=at if d.recipient_blocked else None,
            )
        )
    return facts


async def _record_line_facts(
    conn: AsyncConnection,
    records: Sequence[CallRecord],
    rows: dict[str, ChatState],
    now: datetime,
) -> dict[str, LineFacts]:
    """Apply what the answers say of the lines (card not active, line ineligible or eligible
    again); return the lines' facts as they now are, for the chats' recompute."""
    known: dict[str, tuple[str | None, datetime | None]] = {}
    overrides: dict[str, LineFacts] = {}
    # One 2027 fact per line per batch: chats claimed together, refused together, are one
    # refusal of the line (their backoff must not double once per chat).
    refused_lines: set[str] = set()
    card_answers: dict[str, tuple[str, str | None]] = {}
    for rec in records:
        d = rec.decision
        number = rec.claim.line
        row = rows.get(rec.claim.chat_id)
        if number is None or row is None:
            continue
        card_state, probe_at = known.get(number, (row.line_card_state, row.line_probe_at))
        if d.line_card_state is not None:
            card_state = d.line_card_state
            # Many chats of a line answer 2012 in one batch: the line is written once, after
            # the loop, with the last answer (as if each answer had been written in turn).
            card_answers[number] = (d.line_card_state, d.line_error)
        elif d.line_ineligible:
            if number in refused_lines:
                continue
            refused_lines.add(number)
            marked = await mark_line_ineligible(
                conn, number, at=rec.finished_at, reason=d.error or "2027", now=now
            )
            if marked is None:
                continue  # a later fact about the line is already recorded
            probe_at = marked
            log.warning("line.ineligible", line=number, probe_at=probe_at, source="share")
        elif d.counts_as_shared and d.outcome == Outcome.shared and probe_at is not None:
            # The probe went through: the line delivers again.
            if await mark_line_eligible(conn, number, at=rec.finished_at, now=now):
                log.info("line.eligible", line=number, source="share")
            probe_at = None
        else:
            continue
        known[number] = (card_state, probe_at)
        overrides[number] = line_facts(card_state, row.line_paused, row.line_timezone, probe_at)
    for number, (answered_state, answered_error) in card_answers.items():
        await conn.execute(
            sa.update(Line_table)
            .where(Line_table.c.number == number)
            .values(
                card_state=answered_state,
                card_state_since=now,
                last_error=answered_error,
                updated_at=now,
            )
        )
        # The line's other chats stop until the card is seen active again: only those still
        # due some day are written. The chats of this batch still hold their claims here, so
        # they are left to their own update, which recomputes them with the line's new facts.
        await conn.execute(
            sa.update(chats)
            .where(chats.c.line == number)
            .where(chats.c.claim_attempt_id.is_(None))
            .where(chats.c.next_share_at.is_not(None))
            .values(next_share_at=None)
        )
    return overrides


async def release_claims(
    ledger: Ledger, claims: Sequence[Claim], policy: Policy, now: datetime
) -> None:
    """Give back claims whose call never started (shutdown): nothing was sent."""
    if not claims:
        return
    async with ledger.write() as conn:
        sql = await ClaimSQL.open(conn)
        mine = {c.chat_id: c.attempt_id for c in claims}
        # Only claims still ours: one resolved elsewhere meanwhile has its verdict.
        held = [
            row
            for row in await sql.chats(list(mine))
            if row.claim_attempt_id is not None and row.claim_attempt_id == mine.get(row.chat_id)
        ]
        skipped = [
            _expired_attempt(row, now, Outcome.skipped, "released before the call (shutdown)")
            for row in held
        ]
        updates = [_chat_update(row, compute_next(row, policy, now)) for row in held]
        await sql.run(_outcome_writes(sql.dialect, skipped, updates, now))


__all__ = [
    "CallRecord",
    "CardState",
    "ChatState",
    "ChatStatus",
    "Claim",
    "ClaimResult",
    "chat_state",
    "claim_batch",
    "record_and_claim",
    "record_results",
    "release_claims",
]
