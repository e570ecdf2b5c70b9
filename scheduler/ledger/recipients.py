"""Recipients: opt-outs (2024) and blocks (2026) belong to a handle across the whole account.

A recipient is opted out from the latest opt-out fact (a 403/2024 answer, or the STOP message
itself) until an inbound message from them that is later still, in any chat on any line. Both
are times of messages or answers, never of arrival, so the order in which webhooks and share
outcomes reach the ledger does not change the result. A blocked recipient stays blocked until
our account's blocked list no longer has them.

Every 1:1 chat of a recipient follows the recipient's state in its ``status`` (group chats are
never opted out or blocked as a whole), and its ``next_share_at`` is recomputed in the same
transaction as the fact that changed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.rule import Policy
from scheduler.core.status import RECIPIENT_STATUSES, ChatStatus
from scheduler.ledger.driver import Driver, chunks, codec, driver_of
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, compute_next, select_chats_with_line
from scheduler.ledger.models import RECIPIENTS_HELD, recipients_table
from scheduler.times import earliest, latest

recipients = recipients_table


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    """What the ledger knows of one recipient handle."""

    handle: str
    opted_out_at: datetime | None = None
    last_inbound_at: datetime | None = None
    blocked_at: datetime | None = None

    @property
    def opted_out(self) -> bool:
        # Ties go to the opt-out: the STOP message is itself an inbound message.
        return self.opted_out_at is not None and (
            self.last_inbound_at is None or self.last_inbound_at <= self.opted_out_at
        )

    @property
    def status(self) -> ChatStatus:
        """The status the recipient's 1:1 chats take (unless paused or gone)."""
        if self.blocked_at is not None:
            return ChatStatus.blocked
        if self.opted_out:
            return ChatStatus.opted_out
        return ChatStatus.active

    def merged(self, other: RecipientFacts) -> RecipientFacts:
        """Both sets of facts: latest times win; a block is kept from its earliest sighting."""
        return RecipientFacts(
            self.handle,
            latest(self.opted_out_at, other.opted_out_at),
            latest(self.last_inbound_at, other.last_inbound_at),
            earliest(self.blocked_at, other.blocked_at),
        )


def one_to_one_handle(recipients_column: str | None, is_group: bool | None) -> str | None:
    """The recipient of a 1:1 chat, or None for a group or a chat without a known recipient."""
    if is_group or not recipients_column or "," in recipients_column:
        return None
    return recipients_column


def chat_status_for(current: str, recipient: RecipientFacts | None) -> str:
    """The status a 1:1 chat should have given its recipient's facts.

    Paused and gone chats keep theirs. A chat opted out on its own (a health hint without a
    time, or a ledger from before recipients were kept) stays so while the recipient has no
    opt-out on record: only a later inbound message on that chat clears it (the merge).
    """
    if current not in RECIPIENT_STATUSES:
        return current
    if recipient is not None and recipient.status != ChatStatus.active:
        return recipient.status
    if current == ChatStatus.opted_out and (recipient is None or recipient.opted_out_at is None):
        return current
    return ChatStatus.active


_COLUMNS = ["handle", "opted_out_at", "last_inbound_at", "blocked_at", "created_at", "updated_at"]
_FACT_COLUMNS = _COLUMNS[:4]
# Rows per multi-row upsert: six parameters each, far below both databases' limits.
_UPSERT_ROWS = 200


def _facts(values: dict[str, Any]) -> RecipientFacts:
    return RecipientFacts(
        values["handle"], values["opted_out_at"], values["last_inbound_at"], values["blocked_at"]
    )


async def recipient_facts(
    conn: AsyncConnection, handles: Iterable[str]
) -> dict[str, RecipientFacts]:
    """What the ledger knows of ``handles`` (those it has a row for)."""
    db = await driver_of(conn)
    table = codec(recipients, db.dialect)
    read = table.reader(_FACT_COLUMNS)
    select = (
        f"SELECT {table.columns(_FACT_COLUMNS)} FROM {table.name} WHERE {table.q['handle']} IN "
    )
    found: dict[str, RecipientFacts] = {}
    for part in chunks(sorted(set(handles))):
        for row in await db.fetch(f"{select}({db.marks(len(part))})", part):
            fact = _facts(read(row))
            found[fact.handle] = fact
    return found


def _upsert_sql(db: Driver, rows: int) -> str:
    """A multi-row upsert whose stored times only move forward (a block's only backward), so
    that concurrent writers and replayed facts cannot undo each other."""
    table = codec(recipients, db.dialect)
    q = table.q
    current = {name: f"{table.name}.{q[name]}" for name in _COLUMNS}

    def later(name: str) -> str:
        return (
            f"{q[name]} = CASE WHEN {current[name]} IS NULL OR {current[name]} < excluded.{q[name]}"
            f" THEN excluded.{q[name]} ELSE {current[name]} END"
        )

    earlier_block = (
        f"{q['blocked_at']} = CASE WHEN {current['blocked_at']} IS NULL"
        f" OR {current['blocked_at']} > excluded.{q['blocked_at']}"
        f" THEN excluded.{q['blocked_at']} ELSE {current['blocked_at']} END"
    )
    return (
        f"INSERT INTO {table.name} ({table.columns(_COLUMNS)}) "
        f"VALUES {db.rows_of(len(_COLUMNS), rows)} "
        f"ON CONFLICT ({q['handle']}) DO UPDATE SET {later('opted_out_at')}, "
        f"{later('last_inbound_at')}, {earlier_block}, "
        f"{q['updated_at']} = excluded.{q['updated_at']}"
    )


async def note_recipients(
    conn: AsyncConnection, facts: Iterable[RecipientFacts], now: datetime
) -> tuple[dict[str, RecipientFacts], set[str]]:
    """Record new facts about recipients, in the caller's transaction.

    Returns every named handle's facts afterwards, and the handles whose status changed (whose
    1:1 chats must follow: :func:`follow_recipients`). The webhook hot path runs this once per
    batch: two driver-level statements (read, then one upsert of what changed).
    """
    incoming: dict[str, RecipientFacts] = {}
    for fact in facts:
        known = incoming.get(fact.handle)
        incoming[fact.handle] = fact if known is None else known.merged(fact)
    if not incoming:
        return {}, set()
    before = await recipient_facts(conn, incoming)
    after: dict[str, RecipientFacts] = {}
    writes: list[RecipientFacts] = []
    changed: set[str] = set()
    # In handle order: replicas writing the same recipients lock their rows in one order.
    for handle, fact in sorted(incoming.items()):
        old = before.get(handle)
        new = fact if old is None else old.merged(fact)
        after[handle] = new
        if new != old:
            writes.append(new)
        if (old.status if old is not None else ChatStatus.active) != new.status:
            changed.add(handle)
    if writes:
        db = await driver_of(conn)
        bind = codec(recipients, db.dialect).binder(_COLUMNS)
        for start in range(0, len(writes), _UPSERT_ROWS):
            part = writes[start : start + _UPSERT_ROWS]
            params = [
                value
                for f in part
                for value in bind(
                    [f.handle, f.opted_out_at, f.last_inbound_at, f.blocked_at, now, now]
                )
            ]
            await db.execute(_upsert_sql(db, len(part)), params)
    return after, changed


async def follow_recipients(
    conn: AsyncConnection, handles: Iterable[str], policy: Policy, now: datetime
) -> int:
    """Give every 1:1 chat of ``handles`` its recipient's status and recompute its
    ``next_share_at``, in the caller's transaction; return how many chats changed.

    A chat in flight (claimed) takes the status now and keeps its ``next_share_at``: the
    outcome's recorder recomputes it from the status it reads.
    """
    wanted = sorted(set(handles))
    if not wanted:
        return 0
    known = await recipient_facts(conn, wanted)
    updates: list[dict[str, Any]] = []
    for part in chunks(wanted):
        rows = await conn.execute(
            select_chats_with_line()
            .where(chats.c.recipients.in_(part))
            .where(~chats.c.is_group)
            .where(chats.c.status.in_([str(s) for s in RECIPIENT_STATUSES]))
        )
        for row in rows:
            status = chat_status_for(row.status, known.get(row.recipients))
            if status == row.status:
                continue
            nxt = row.next_share_at
            if row.claim_attempt_id is None:
                nxt = compute_next(row, policy, now, status=status)
            updates.append({"b_chat_id": row.chat_id, "b_status": status, "b_next": nxt})
    if updates:
        updates.sort(key=lambda u: str(u["b_chat_id"]))  # one lock order across replicas
        await conn.execute(
            sa.update(chats)
            .where(chats.c.chat_id == sa.bindparam("b_chat_id"))
            .values(
                status=sa.bindparam("b_status"),
                next_share_at=sa.bindparam("b_next"),
                updated_at=now,
            ),
            updates,
        )
    return len(updates)


async def record_recipient_facts(
    conn: AsyncConnection, facts: Iterable[RecipientFacts], policy: Policy, now: datetime
) -> set[str]:
    """Note facts and make the chats of every recipient whose status changed follow it."""
    _, changed = await note_recipients(conn, facts, now)
    await follow_recipients(conn, changed, policy, now)
    return changed


@dataclass(frozen=True, slots=True)
class BlockedSync:
    blocked: int
    unblocked: int


async def sync_blocked_handles(
    ledger: Ledger,
    listed: Mapping[str, datetime],
    *,
    read_started_at: datetime,
    policy: Policy,
    now: datetime,
) -> BlockedSync:
    """Make the ledger's blocks match our account's blocked list (``handle -> blocked_at``).

    A handle the list no longer has is unblocked, unless the ledger learnt of its block (a
    2026 answer) after the list was read: the list may predate it.
    """
    async with ledger.write() as conn:
        stale = await conn.execute(
            sa.select(recipients.c.handle)
            .where(recipients.c.blocked_at.is_not(None))
            .where(recipients.c.blocked_at < read_started_at)
        )
        to_unblock = sorted({row.handle for row in stale} - listed.keys())
        for part in chunks(to_unblock):
            await conn.execute(
                sa.update(recipients)
                .where(recipients.c.handle.in_(part))
                .values(blocked_at=None, updated_at=now)
            )
        _, newly_blocked = await note_recipients(
            conn,
            [RecipientFacts(handle, blocked_at=at) for handle, at in listed.items()],
            now,
        )
        await follow_recipients(conn, [*to_unblock, *newly_blocked], policy, now)
    return BlockedSync(blocked=len(newly_blocked), unblocked=len(to_unblock))


@dataclass(frozen=True, slots=True)
class RecipientCounts:
    opted_out: int
    blocked: int


async def recipient_counts(conn: AsyncConnection) -> RecipientCounts:
    r = recipients
    opted_out = sa.and_(
        r.c.opted_out_at.is_not(None),
        sa.or_(r.c.last_inbound_at.is_(None), r.c.last_inbound_at <= r.c.opted_out_at),
    )
    row = (
        await conn.execute(
            sa.select(
                sa.func.count().filter(opted_out).label("opted_out"),
                sa.func.count().filter(r.c.blocked_at.is_not(None)).label("blocked"),
            )
            # The partial index's own condition: only the held rows are read, not everyone
            # who ever wrote in.
            .where(sa.text(RECIPIENTS_HELD))
        )
    ).one()
    return RecipientCounts(opted_out=int(row.opted_out or 0), blocked=int(row.blocked or 0))
