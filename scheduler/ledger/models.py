"""SQLAlchemy models of the ledger. All timestamps are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The states live in the pure core; named here too (explicitly re-exported) so that code
# importing them from the models keeps working while it moves to scheduler.core.status.
from scheduler.core.status import RECIPIENT_STATUSES as RECIPIENT_STATUSES
from scheduler.core.status import SHARED_OUTCOMES as SHARED_OUTCOMES
from scheduler.core.status import CardState as CardState
from scheduler.core.status import ChatStatus as ChatStatus
from scheduler.core.status import Outcome as Outcome


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which has no zones) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use scheduler.clock.now()")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class Line(Base):
    __tablename__ = "lines"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Desired card, from the schedule file (null: observed only).
    desired_first_name: Mapped[str | None] = mapped_column(String(100))
    desired_last_name: Mapped[str | None] = mapped_column(String(100))
    desired_image_url: Mapped[str | None] = mapped_column(Text)
    # Observed card, from GET /v3/contact_card.
    card_state: Mapped[str] = mapped_column(
        String(16), default=CardState.unknown, server_default=CardState.unknown
    )
    card_first_name: Mapped[str | None] = mapped_column(String(100))
    card_last_name: Mapped[str | None] = mapped_column(String(100))
    card_image_url: Mapped[str | None] = mapped_column(Text)
    card_checked_at: Mapped[datetime | None]
    card_active_since: Mapped[datetime | None]
    card_state_since: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # Card write budget: recent write times (JSON list of ISO stamps) and the next allowed write.
    card_write_log: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    card_next_write_at: Mapped[datetime | None]
    # Consecutive failed writes (4004, 2022...), for a wait that grows with each.
    card_write_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The last write Linq accepted; activation is polled from here until a deadline.
    card_written_at: Mapped[datetime | None]
    # Changes of the card's activity whose reschedule of the line's chats has not finished:
    # set in the same transaction as the change, cleared when every chat is recomputed, so a
    # crash in between leaves the work marked for the next card check (or start-up).
    reschedule_pending: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Line eligibility (2027 answers, phone_number.status_updated): null = eligible. While
    # ineligible, one share on the line is tried at probe_at; each refusal doubles the wait.
    ineligible_since: Mapped[datetime | None]
    ineligible_reason: Mapped[str | None] = mapped_column(Text)
    probe_at: Mapped[datetime | None]
    probe_backoff_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Time of the latest eligibility fact applied, so that a stale webhook changes nothing.
    eligibility_changed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# Percent of a chats page that inserts fill on PostgreSQL; the rest is room for updates, so
# that a claim (which changes no indexed column) is a HOT update: no new index entries. Set by
# migration 0007 (``ALTER TABLE``), not as ``postgresql_with`` here: a table option of one
# dialect makes SQLAlchemy load that dialect, and a SQLite daemon loads only its own.
CHATS_FILLFACTOR = 70


class Chat(Base):
    __tablename__ = "chats"

    chat_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    line: Mapped[str | None] = mapped_column(String(16), index=True)
    # Indexed: an opt-out or a block changes every 1:1 chat of the recipient at once.
    recipients: Mapped[str] = mapped_column(Text, default="", server_default="", index=True)
    is_group: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    service: Mapped[str | None] = mapped_column(String(16))
    first_outbound_at: Mapped[datetime | None]
    last_outbound_at: Mapped[datetime | None]
    last_inbound_at: Mapped[datetime | None]
    last_shared_at: Mapped[datetime | None]
    share_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(
        String(16), default=ChatStatus.active, server_default=ChatStatus.active
    )
    # Earliest time a share may be tried again after a 429 or a failure.
    not_before: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Precomputed by the sharing rule; the due query is a range scan on this index.
    next_share_at: Mapped[datetime | None] = mapped_column(index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claim_attempt_id: Mapped[int | None] = mapped_column(BigInteger)
    claim_expires_at: Mapped[datetime | None]
    # The rest of the claim's intent: when it was taken and whether it was forced (`share
    # now --force`). The claim columns are the intent record: the attempt's row is written
    # only with its outcome (or as ambiguous if the lease runs out first).
    claim_started_at: Mapped[datetime | None]
    claim_forced: Mapped[bool | None] = mapped_column(Boolean)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ShareAttempt(Base):
    __tablename__ = "share_attempts"
    __table_args__ = (
        Index("ix_share_attempts_chat_id_started_at", "chat_id", "started_at"),
        Index("ix_share_attempts_outcome_started_at", "outcome", "started_at"),
        # SQLite: ids never reused, and a claim reserves a batch's ids by moving the table's
        # sqlite_sequence row (PostgreSQL: nextval of its sequence).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    chat_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("chats.chat_id", ondelete="CASCADE")
    )
    line: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(128))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    instance: Mapped[str] = mapped_column(String(128))
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class BackfillState(Base):
    """Where a backfill run got to, per line ("*" for all lines), so that it can resume."""

    __tablename__ = "backfill_state"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    since: Mapped[datetime | None]
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    chats_seen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# A recipient row that may hold its chats: the condition of ix_recipients_held
# (``declare_recipients_held_index``), and of the count that reads by it.
RECIPIENTS_HELD = "opted_out_at IS NOT NULL OR blocked_at IS NOT NULL"


class Recipient(Base):
    """A recipient handle's account-wide state: opt-outs (2024) and blocks (2026) hold across
    every chat and every line, not for one chat.

    Opted out while ``opted_out_at`` is set and no later inbound message is known
    (``last_inbound_at``): both are message or answer times, so arrival order does not matter.
    Ties go to the opt-out (the STOP message is itself inbound).
    """

    __tablename__ = "recipients"
    # Also indexed: ix_recipients_held (``declare_recipients_held_index``).

    handle: Mapped[str] = mapped_column(String(320), primary_key=True)
    opted_out_at: Mapped[datetime | None]
    last_inbound_at: Mapped[datetime | None]
    # On our account's blocked list since (null: not blocked).
    blocked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(index=True)


class OperatorAction(Base):
    """One operator intervention (pause, resume, share now, import...): who, when, what."""

    __tablename__ = "operator_actions"
    __table_args__ = (Index("ix_operator_actions_target_at", "target", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    # A fixed set: chat.pause, chat.resume, share.now, line.pause, line.resume, ledger.import.
    action: Mapped[str] = mapped_column(String(32))
    # What was acted on: a chat id, a line's number, an import file's name.
    target: Mapped[str] = mapped_column(String(255))
    # What came of it, in a few words ("active -> paused", "shared (forced)", "12 rows").
    result: Mapped[str] = mapped_column(Text, default="", server_default="")


# Core tables, for the set-based statements of the claim protocol and ingestion.
chats_table = cast(Table, Chat.__table__)
lines_table = cast(Table, Line.__table__)
attempts_table = cast(Table, ShareAttempt.__table__)
webhook_events_table = cast(Table, WebhookEvent.__table__)
backfill_state_table = cast(Table, BackfillState.__table__)
operator_actions_table = cast(Table, OperatorAction.__table__)
recipients_table = cast(Table, Recipient.__table__)


def declare_recipients_held_index() -> Index:
    """``ix_recipients_held``: the few recipients held (opted out or blocked) among all that
    ever wrote in, a partial index on both databases; the gauges count them by it every card
    check instead of scanning the table (migration ``0008``).

    Declared by the schema's tooling (``migrations/env.py``, the migration tests), not with
    the model: its condition is an option of each dialect, and SQLAlchemy loads every dialect
    named in an index's options to check them, where a daemon (which never creates tables)
    loads only its own database's (the PostgreSQL dialect is 2 MB in a SQLite daemon)."""
    for index in recipients_table.indexes:
        if index.name == "ix_recipients_held":
            return index
    return Index(
        "ix_recipients_held",
        recipients_table.c.handle,
        postgresql_where=text(RECIPIENTS_HELD),
        sqlite_where=text(RECIPIENTS_HELD),
    )
