"""Writing activity into the ledger: dedupe by event id, merge, recompute next_share_at.

Webhooks, backfill and import all end here. A chat whose facts do not change is not written
at all (not even ``updated_at``), so replaying known activity leaves the ledger as it was.
Each function here is one transaction, or runs in the one its caller opened with
:func:`chat_merger`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.event import (
    ActivityTimes,
    ApplyResult,
    BackfillPage,
    BackfillResume,
    ChatActivity,
    Event,
    LineStatus,
    UpsertCounts,
)
from scheduler.core.merge import MergedChat, merge_activity
from scheduler.core.rule import LineFacts, Policy, next_share_at
from scheduler.ledger.dialect import insert_ignore, upsert
from scheduler.ledger.driver import Driver, Statement, chunks, codec, driver_of
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chat_facts, chats, line_facts, lines
from scheduler.ledger.line_eligibility import mark_line_eligible, mark_line_ineligible
from scheduler.ledger.models import (
    CardState,
    ChatStatus,
    backfill_state_table,
    webhook_events_table,
)
from scheduler.ledger.recipients import (
    RecipientFacts,
    chat_status_for,
    follow_recipients,
    note_recipients,
    one_to_one_handle,
)

webhook_events = webhook_events_table
backfill_state = backfill_state_table
log = structlog.get_logger("scheduler.ingest")
# A chat after some activity, from what is known of it (None: a chat not yet known).
Merge = Callable[[MergedChat | None], MergedChat]

# Bookkeeping columns: a change in these alone is not a change of the chat.
_BOOKKEEPING = frozenset({"next_share_at", "updated_at", "created_at"})
_UNKNOWN_LINE = line_facts(None, False, None)


async def _ensure_line(conn: AsyncConnection, number: str, now: datetime) -> None:
    await conn.execute(
        insert_ignore(lines, conn.dialect.name).values(
            number=number, card_state=CardState.unknown, created_at=now, updated_at=now
        )
    )


_CHAT_COLUMNS = [c.name for c in chats.c]
# A new chat's columns, but for its id and bookkeeping times.
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


def _merged_of(row: dict[str, Any]) -> MergedChat:
    """What activity decides of a chat, from its row."""
    return MergedChat(
        chat_id=row["chat_id"],
        line=row["line"],
        recipients=row["recipients"] or "",
        is_group=bool(row["is_group"]),
        service=row["service"],
        first_outbound_at=row["first_outbound_at"],
        last_outbound_at=row["last_outbound_at"],
        last_inbound_at=row["last_inbound_at"],
        last_shared_at=row["last_shared_at"],
        share_count=row["share_count"] or 0,
        status=ChatStatus(row["status"]),
    )


def _columns_of(merged: MergedChat, before: dict[str, Any] | None) -> dict[str, Any]:
    """The chat's row after the merge: the merged facts over its current (or new) columns."""
    row = dict(CHAT_DEFAULTS if before is None else before)
    row.update(
        chat_id=merged.chat_id,
        line=merged.line,
        recipients=merged.recipients,
        is_group=merged.is_group,
        service=merged.service,
        first_outbound_at=merged.first_outbound_at,
        last_outbound_at=merged.last_outbound_at,
        last_inbound_at=merged.last_inbound_at,
        last_shared_at=merged.last_shared_at,
        share_count=merged.share_count,
        status=merged.status,
    )
    return row


_LINE_COLUMNS = ["number", "card_state", "paused", "timezone", "probe_at"]
# Rows per multi-row INSERT: 20 columns each, far below both databases' parameter limits.
_INSERT_ROWS = 200


def _facts_of(line: dict[str, Any]) -> LineFacts:
    return line_facts(line["card_state"], line["paused"], line["timezone"], line["probe_at"])


def _read_statements(
    db: Driver, chat_ids: Sequence[str], numbers: Sequence[str]
) -> list[Statement]:
    """SELECTs of the chats (joined with the lines they name) and of the lines ``numbers``."""
    chat, line = codec(chats, db.dialect), codec(lines, db.dialect)
    select_chats = (
        f"SELECT {chat.columns(_CHAT_COLUMNS, 'c')}, {line.columns(_LINE_COLUMNS, 'l')} "
        f"FROM {chat.name} c LEFT JOIN {line.name} l ON l.{line.q['number']} = c.{chat.q['line']} "
        f"WHERE c.{chat.q['chat_id']} IN "
    )
    select_lines = (
        f"SELECT {line.columns(_LINE_COLUMNS)} FROM {line.name} WHERE {line.q['number']} IN "
    )
    return [
        *(
            Statement(f"{select_chats}({db.marks(len(part))})", part, rows=True)
            for part in chunks(chat_ids)
        ),
        *(
            Statement(f"{select_lines}({db.marks(len(part))})", part, rows=True)
            for part in chunks(numbers)
        ),
    ]


def _read_rows(
    db: Driver, chat_rows: Iterable[Sequence[Any]], line_rows: Iterable[Sequence[Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, LineFacts]]:
    """The chats' columns, and the facts of every line read (joined or on its own)."""
    chat, line = codec(chats, db.dialect), codec(lines, db.dialect)
    read_chat, read_line = chat.reader(_CHAT_COLUMNS), line.reader(_LINE_COLUMNS)
    width = len(_CHAT_COLUMNS)
    found: dict[str, dict[str, Any]] = {}
    facts: dict[str, LineFacts] = {}
    for row in chat_rows:
        current = read_chat(row[:width])
        found[current["chat_id"]] = current
        if row[width] is not None:
            known = read_line(row[width:])
            facts[known["number"]] = _facts_of(known)
    for row in line_rows:
        known = read_line(row)
        facts[known["number"]] = _facts_of(known)
    return found, facts


def _split_reads(
    db: Driver, results: Sequence[list[Sequence[Any]]], chat_parts: int
) -> tuple[dict[str, dict[str, Any]], dict[str, LineFacts]]:
    """:func:`_read_rows` of the results of :func:`_read_statements` (``chat_parts`` chat
    SELECTs first, then the line SELECTs)."""
    return _read_rows(
        db,
        (row for rows in results[:chat_parts] for row in rows),
        (row for rows in results[chat_parts:] for row in rows),
    )


async def _current_rows(
    db: Driver, chat_ids: Sequence[str], numbers: Sequence[str] = ()
) -> tuple[dict[str, dict[str, Any]], dict[str, LineFacts]]:
    """The chats' columns, and the facts of the lines they name and of ``numbers``: one trip."""
    statements = _read_statements(db, chat_ids, numbers)
    chat_parts = len(list(chunks(chat_ids)))
    return _split_reads(db, await db.run_all(statements), chat_parts)


async def _create_lines(conn: AsyncConnection, numbers: Iterable[str], now: datetime) -> None:
    for number in sorted(numbers):
        await _ensure_line(conn, number, now)


def _schedule(merged: dict[str, Any], line: LineFacts, policy: Policy, now: datetime) -> None:
    # A chat in flight keeps its next_share_at as the claim found it; the recorder recomputes it.
    if merged.get("claim_attempt_id") is None:
        merged["next_share_at"] = next_share_at(
            chat_facts(SimpleNamespace(**merged)), line, policy, now
        )


def _insert_statements(db: Driver, rows: list[dict[str, Any]]) -> list[Statement]:
    chat = codec(chats, db.dialect)
    bind = chat.binder(_CHAT_COLUMNS)
    # Every chat column is given; a key the merge did not set takes the model's default.
    values = [bind([row.get(c, CHAT_DEFAULTS.get(c)) for c in _CHAT_COLUMNS]) for row in rows]
    insert = f"INSERT INTO {chat.name} ({chat.columns(_CHAT_COLUMNS)}) VALUES "
    statements = []
    for start in range(0, len(values), _INSERT_ROWS):
        part = values[start : start + _INSERT_ROWS]
        statements.append(
            Statement(
                insert + db.rows_of(len(_CHAT_COLUMNS), len(part)),
                [v for row in part for v in row],
            )
        )
    return statements


def _update_statements(db: Driver, updates: list[tuple[str, dict[str, Any]]]) -> list[Statement]:
    """One executemany per set of changed columns (usually one set for a whole batch)."""
    chat = codec(chats, db.dialect)
    groups: dict[tuple[str, ...], list[tuple[str, dict[str, Any]]]] = {}
    for chat_id, changed in updates:
        unknown = set(changed) - chat.q.keys()
        if unknown:
            raise ValueError(f"not chat columns: {sorted(unknown)}")
        groups.setdefault(tuple(sorted(changed)), []).append((chat_id, changed))
    statements = []
    for names, items in groups.items():
        bind = chat.binder([*names, "chat_id"])
        sets = ", ".join(f"{chat.q[name]} = {db.mark}" for name in names)
        sql = f"UPDATE {chat.name} SET {sets} WHERE {chat.q['chat_id']} = {db.mark}"
        params = [bind([*(changed[name] for name in names), chat_id]) for chat_id, changed in items]
        statements.append(Statement(sql, params, many=True))
    return statements


async def upsert_chats(
    conn: AsyncConnection,
    merges: Mapping[str, Merge],
    policy: Policy,
    now: datetime,
    *,
    write: bool = True,
) -> UpsertCounts:
    """Merge many chats in the caller's transaction; ``write=False`` only counts.

    ``merges`` maps a chat id to a function from its current columns (None when the chat is
    new) to its merged columns. Lines the chats name are created when missing.
    """
    if not merges:
        return UpsertCounts()
    db = await driver_of(conn)
    current, facts = await _current_rows(db, list(merges))
    return await _merge_into(conn, db, merges, current, facts, policy, now, write=write)


async def _merge_into(
    conn: AsyncConnection,
    db: Driver,
    merges: Mapping[str, Merge],
    current: dict[str, dict[str, Any]],
    facts: dict[str, LineFacts],
    policy: Policy,
    now: datetime,
    *,
    write: bool,
) -> UpsertCounts:
    """:func:`upsert_chats` once the chats' current columns and their lines' facts are read
    (``facts`` may lack lines: they are read, and created when ``write``)."""
    merged_chats = {
        chat_id: merge(None if before is None else _merged_of(before))
        for chat_id, merge in merges.items()
        for before in (current.get(chat_id),)
    }
    opt_outs = {chat_id: merged.opted_out_seen_at for chat_id, merged in merged_chats.items()}
    merged_rows = {
        chat_id: _columns_of(merged, current.get(chat_id))
        for chat_id, merged in merged_chats.items()
    }
    changed_recipients: set[str] = set()
    if write:
        changed_recipients = await _follow_recipients_in_batch(conn, merged_rows, opt_outs, now)
    numbers = {m["line"] for m in merged_rows.values() if m.get("line")}
    missing = numbers - facts.keys()
    if missing:
        _, found = await _current_rows(db, (), sorted(missing))
        facts.update(found)
        if write:
            await _create_lines(conn, missing - found.keys(), now)
    inserts: list[dict[str, Any]] = []
    updates: list[tuple[str, dict[str, Any]]] = []
    unchanged = 0
    for chat_id, merged in merged_rows.items():
        before = current.get(chat_id)
        line = facts.get(merged.get("line") or "", _UNKNOWN_LINE)
        if before is None:
            _schedule(merged, line, policy, now)
            merged["chat_id"] = chat_id
            merged["created_at"] = now
            merged["updated_at"] = now
            inserts.append(merged)
            continue
        changed = {k: v for k, v in merged.items() if k not in _BOOKKEEPING and before.get(k) != v}
        if not changed:
            unchanged += 1
            continue
        _schedule(merged, line, policy, now)
        if merged.get("next_share_at") != before.get("next_share_at"):
            changed["next_share_at"] = merged["next_share_at"]
        changed["updated_at"] = now
        updates.append((chat_id, changed))
    if write:
        await db.run_all([*_insert_statements(db, inserts), *_update_statements(db, updates)])
        # The recipients' chats outside this batch (other lines) follow too.
        await follow_recipients(conn, changed_recipients, policy, now)
    return UpsertCounts(created=len(inserts), updated=len(updates), unchanged=unchanged)


async def _follow_recipients_in_batch(
    conn: AsyncConnection,
    merged_rows: dict[str, dict[str, Any]],
    opt_outs: dict[str, datetime | None],
    now: datetime,
) -> set[str]:
    """Record what the batch says of its 1:1 chats' recipients (inbound times, opt-outs) and
    give those chats their recipient's status; return the recipients whose status changed."""
    handles: dict[str, str] = {}
    facts: list[RecipientFacts] = []
    for chat_id, merged in merged_rows.items():
        handle = one_to_one_handle(merged.get("recipients"), merged.get("is_group"))
        if handle is None:
            continue
        handles[chat_id] = handle
        facts.append(
            RecipientFacts(
                handle,
                opted_out_at=opt_outs.get(chat_id),
                last_inbound_at=merged.get("last_inbound_at"),
            )
        )
    known, changed = await note_recipients(conn, facts, now)
    for chat_id, handle in handles.items():
        merged = merged_rows[chat_id]
        merged["status"] = chat_status_for(
            merged.get("status", ChatStatus.active), known.get(handle)
        )
    return changed


def merge_all(acts: Iterable[ChatActivity]) -> Merge:
    """A merge applying several activities of one chat, in order."""
    ordered = list(acts)

    def merge(current: MergedChat | None) -> MergedChat:
        chat = current
        for act in ordered:
            chat = merge_activity(chat, act)
        assert chat is not None, "merge_all needs at least one activity"
        return chat

    return merge


# -- webhook events ---------------------------------------------------------------------------

_EVENT_COLUMNS = ["event_id", "event_type", "received_at"]
# Event ids per INSERT: three parameters each, far below the databases' limits.
_ID_ROWS = 500


def _id_statements(db: Driver, events: Sequence[Event], now: datetime) -> list[Statement]:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING`` of the events' ids: what it returns is
    the ids this transaction inserted (the others are known). A replica recording the same id
    at the same moment makes ours conflict, so an event is applied once."""
    table = codec(webhook_events, db.dialect)
    bind = table.binder(_EVENT_COLUMNS)
    unique = {e.event_id: e for e in reversed(events)}
    ids = list(unique)
    statements = []
    for start in range(0, len(ids), _ID_ROWS):
        part = ids[start : start + _ID_ROWS]
        sql = (
            f"INSERT INTO {table.name} ({table.columns(_EVENT_COLUMNS)}) "
            f"VALUES {db.rows_of(len(_EVENT_COLUMNS), len(part))} "
            f"ON CONFLICT DO NOTHING RETURNING {table.q['event_id']}"
        )
        params = [v for i in part for v in bind([i, unique[i].event_type, now])]
        statements.append(Statement(sql, params, rows=True))
    return statements


async def record_events(
    ledger: Ledger, events: Sequence[Event], policy: Policy, now: datetime
) -> list[ApplyResult]:
    """Record many events and their effects in one transaction, in arrival order.

    A repeated event id (already in the ledger, or earlier in the batch) changes nothing.
    The ids are inserted, and the chats and lines the events name read, in one trip; the
    chats' new columns are written in a second, the COMMIT is the third.
    """
    results: list[ApplyResult] = []
    async with ledger.write() as conn:
        db = await driver_of(conn)
        activities = [e.activity for e in events if e.activity is not None]
        chat_ids = sorted({a.chat_id for a in activities})
        numbers = sorted({a.line for a in activities if a.line})
        inserts = _id_statements(db, events, now)
        reads = _read_statements(db, chat_ids, numbers)
        answers = await db.run_all([*inserts, *reads])
        fresh = {str(row[0]) for rows in answers[: len(inserts)] for row in rows}
        # Read for every event's chat, a repeated one's too: one trip before the ids are known.
        current, facts = _split_reads(db, answers[len(inserts) :], len(list(chunks(chat_ids))))
        by_chat: dict[str, list[ChatActivity]] = {}
        statuses: list[LineStatus] = []
        for event in events:
            if event.event_id not in fresh:
                results.append("duplicate")
                continue
            fresh.discard(event.event_id)
            if event.line_status is not None:
                statuses.append(event.line_status)
                results.append("applied")
                continue
            if event.activity is None:
                results.append("ignored")
                continue
            by_chat.setdefault(event.activity.chat_id, []).append(event.activity)
            results.append("applied")
        if by_chat:
            merges = {chat: merge_all(acts) for chat, acts in by_chat.items()}
            await _merge_into(conn, db, merges, current, facts, policy, now, write=True)
        # Each status is ordered by its own time, so applying them in any order is the same.
        for status in sorted(statuses, key=lambda s: s.changed_at):
            await _apply_line_status(conn, status, now)
    return results


async def record_event(ledger: Ledger, event: Event, policy: Policy, now: datetime) -> ApplyResult:
    """Record the event id and its effect in one transaction; a repeated id changes nothing."""
    async with ledger.write() as conn:
        inserted = await conn.execute(
            insert_ignore(webhook_events, conn.dialect.name)
            .values(event_id=event.event_id, event_type=event.event_type, received_at=now)
            .returning(webhook_events.c.event_id)
        )
        if inserted.first() is None:
            return "duplicate"
        if event.line_status is not None:
            await _apply_line_status(conn, event.line_status, now)
            return "applied"
        if event.activity is None:
            return "ignored"
        await upsert_chats(conn, {event.activity.chat_id: merge_all([event.activity])}, policy, now)
        return "applied"


async def _apply_line_status(conn: AsyncConnection, status: LineStatus, now: datetime) -> None:
    """A ``phone_number.status_updated``: FLAGGED or CRITICAL pauses the line, ACTIVE resumes
    it; a report older than the line's latest eligibility fact changes nothing."""
    if status.eligible:
        if await mark_line_eligible(conn, status.line, at=status.changed_at, now=now):
            log.info("line.eligible", line=status.line, source="webhook")
        return
    reason = f"phone_number.status_updated: {status.status}, reputation {status.reputation}"
    probe_at = await mark_line_ineligible(
        conn, status.line, at=status.changed_at, reason=reason, now=now
    )
    if probe_at is not None:
        log.warning("line.ineligible", line=status.line, probe_at=probe_at, source="webhook")


async def prune_events(ledger: Ledger, older_than: datetime) -> int:
    """Forget event ids received before ``older_than`` (past the retention period)."""
    async with ledger.write() as conn:
        result = await conn.execute(
            sa.delete(webhook_events).where(webhook_events.c.received_at < older_than)
        )
        return int(result.rowcount or 0)


# -- backfill ---------------------------------------------------------------------------------


async def line_numbers(ledger: Ledger) -> list[str]:
    """Every line the ledger knows."""
    async with ledger.read() as conn:
        return [str(n) for (n,) in await conn.execute(sa.select(lines.c.number))]


async def activity_times(ledger: Ledger, chat_ids: Sequence[str]) -> dict[str, ActivityTimes]:
    """The activity times the ledger has of those of ``chat_ids`` it knows."""
    known: dict[str, ActivityTimes] = {}
    async with ledger.read() as conn:
        for part in chunks(chat_ids):
            rows = await conn.execute(
                sa.select(
                    chats.c.chat_id,
                    chats.c.first_outbound_at,
                    chats.c.last_outbound_at,
                    chats.c.last_inbound_at,
                ).where(chats.c.chat_id.in_(part))
            )
            for row in rows:
                known[row.chat_id] = ActivityTimes(
                    row.chat_id, row.first_outbound_at, row.last_outbound_at, row.last_inbound_at
                )
    return known


async def start_backfill(
    ledger: Ledger, scope: str, since: datetime | None, now: datetime, *, restart: bool
) -> BackfillResume | None:
    """Where to resume an unfinished backfill of ``scope`` begun with the same ``since``;
    otherwise (or with ``restart``) None, and the scope's progress starts afresh."""
    async with ledger.write() as conn:
        row = (
            await conn.execute(sa.select(backfill_state).where(backfill_state.c.scope == scope))
        ).first()
        if (
            not restart
            and row is not None
            and row.completed_at is None
            and row.cursor is not None
            and row.since == since
        ):
            return BackfillResume(scope, str(row.cursor), int(row.chats_seen))
        fresh_start = {
            "cursor": None,
            "since": since,
            "started_at": now,
            "updated_at": now,
            "completed_at": None,
            "chats_seen": 0,
        }
        stmt = upsert(backfill_state, conn.dialect.name).values({"scope": scope, **fresh_start})
        await conn.execute(
            stmt.on_conflict_do_update(index_elements=[backfill_state.c.scope], set_=fresh_start)
        )
    return None


async def record_backfill_page(
    ledger: Ledger,
    page: BackfillPage,
    merges: Mapping[str, Merge],
    policy: Policy,
    now: datetime,
) -> UpsertCounts:
    """Merge one page's chats and move the scope's cursor past it, in one transaction: a run
    that stops resumes from the last page written."""
    async with ledger.write() as conn:
        counts = await upsert_chats(conn, merges, policy, now)
        await conn.execute(
            sa.update(backfill_state)
            .where(backfill_state.c.scope == page.scope)
            .values(
                cursor=page.next_cursor,
                updated_at=now,
                chats_seen=backfill_state.c.chats_seen + page.listed,
                completed_at=now if page.next_cursor is None else None,
            )
        )
    return counts


# -- import -----------------------------------------------------------------------------------

MergeBatch = Callable[[Mapping[str, Merge]], Awaitable[UpsertCounts]]


@contextlib.asynccontextmanager
async def chat_merger(
    ledger: Ledger, policy: Policy, now: datetime, *, write: bool
) -> AsyncIterator[MergeBatch]:
    """One transaction for many batches of merges: all of them are written, or none.

    With ``write=False`` it only reads, and counts what the merges would change.
    """
    opened = ledger.write() if write else ledger.read()
    async with opened as conn:

        async def merge_batch(merges: Mapping[str, Merge]) -> UpsertCounts:
            return await upsert_chats(conn, merges, policy, now, write=write)

        yield merge_batch
