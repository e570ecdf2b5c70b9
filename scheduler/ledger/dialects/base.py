"""What differs between the ledger's databases, as one interface, and the SQL they share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import sqlalchemy as sa
from sqlalchemy.sql.dml import Insert

from scheduler.core.chat import AttemptRow, ChatState, ChatUpdate
from scheduler.ledger.driver import Statement

# The chat columns the rule and the claim protocol read, then its line's, then the claim's.
FACT_COLUMNS = (
    "chat_id",
    "line",
    "recipients",
    "is_group",
    "service",
    "first_outbound_at",
    "last_outbound_at",
    "last_inbound_at",
    "last_shared_at",
    "share_count",
    "status",
    "not_before",
    "consecutive_failures",
    "next_share_at",
    "claim_attempt_id",
    "claim_expires_at",
    "last_error",
)
LINE_FACT_COLUMNS = ("card_state", "paused", "timezone", "probe_at")
# The rest of the claim's intent, last (they have defaults in ChatState).
CLAIM_COLUMNS = ("claimed_by", "claim_started_at", "claim_forced")
# A finished attempt's row, the same on both databases but for the source of its values
# (``unnest`` arrays on PostgreSQL, one ``VALUES`` row per execution on SQLite).
INSERT_ATTEMPT = (
    "INSERT INTO share_attempts (id, chat_id, line, started_at, instance, forced, outcome,"
    " finished_at, http_status, error_code, error_message, trace_id, latency_ms, tries)"
)
# A row already closed keeps its verdict; only a ``started`` row (a claim of the previous
# release, which wrote its intent as an attempt row) takes the outcome.
ON_ATTEMPT_CONFLICT = (
    " ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome,"
    " finished_at = excluded.finished_at, http_status = excluded.http_status,"
    " error_code = excluded.error_code, error_message = excluded.error_message,"
    " trace_id = excluded.trace_id, latency_ms = excluded.latency_ms, tries = excluded.tries"
    " WHERE share_attempts.outcome = 'started'"
)
# A chat the due query may return: no claim, or a claim whose lease ran out at ``now`` (its
# owner died mid-call; ``claim_batch`` resolves it). ``{now}`` is the dialect's placeholder.
# A claim leaves ``next_share_at`` as it was, so a chat in flight is still in the due range:
# this filter, not the index, keeps it out while its lease lives.
NOT_CLAIMED = (
    "(c.claim_attempt_id IS NULL OR c.claim_expires_at IS NULL OR c.claim_expires_at <= {now})"
)
# A chat found not due after all: its ``next_share_at`` corrected, and the claim
# ``claim_due`` took on it dropped. ``{mark}`` is the dialect's placeholder.
RESCHEDULE = (
    "UPDATE chats SET next_share_at = {mark}, claimed_by = NULL, claim_attempt_id = NULL,"
    " claim_expires_at = NULL, claim_started_at = NULL, claim_forced = NULL"
    " WHERE chat_id = {mark}"
)


def fact_list(chat: str, line: str) -> str:
    """The columns of a fact row (``ChatState``'s order), from the chat row named ``chat`` and
    the line row named ``line``."""
    return ", ".join(
        [
            *(f"{chat}.{name}" for name in FACT_COLUMNS),
            *(f"{line}.{name}" for name in LINE_FACT_COLUMNS),
            *(f"{chat}.{name}" for name in CLAIM_COLUMNS),
        ]
    )


SELECT_FACTS = f"SELECT {fact_list('c', 'l')} FROM chats c LEFT JOIN lines l ON l.number = c.line"


if TYPE_CHECKING:
    # Named for type checks only: at run time only the dialect in use is imported.
    from sqlalchemy.dialects import postgresql, sqlite

    # An INSERT with the database's own ``on_conflict_do_update``.
    UpsertInsert: TypeAlias = postgresql.Insert | sqlite.Insert


class LedgerDialect(Protocol):
    """The statements whose SQL differs between SQLite and PostgreSQL, built, not run:
    :class:`scheduler.ledger.claim_sql.ClaimSQL` runs them on the driver connection of the
    caller's transaction, several in one trip where the caller can wait for all of them at
    once. Each is one round trip whatever the batch size (arrays or one ``VALUES`` list per
    statement)."""

    name: str

    def bind_time(self, value: datetime | None) -> object:
        """A time as this database's driver takes it."""
        ...

    def insert_ignore(self, table: sa.Table) -> Insert:
        """INSERT that silently skips rows whose primary key exists."""
        ...

    def upsert(self, table: sa.Table) -> UpsertInsert:
        """INSERT with this database's ``on_conflict_do_update``."""
        ...

    def states(self, rows: Iterable[Sequence[Any]]) -> list[ChatState]:
        """The records of rows read by :meth:`due` or :meth:`chats`."""
        ...

    def due(self, now: datetime, limit: int) -> Statement:
        """The ``limit`` chats due soonest, by the ``next_share_at`` index, but for those
        under a live claim; where the database has row locks, locked, skipping those another
        transaction holds."""
        ...

    # Whether the due chats are read and claimed by one statement (:meth:`claim_due`), or
    # read (:meth:`due`), checked against the rule, then claimed by their ids (:meth:`claim`).
    claims_as_it_reads: bool

    def claim_due(
        self, now: datetime, limit: int, *, instance: str, lease_end: datetime
    ) -> Statement:
        """Where ``claims_as_it_reads``: claim the ``limit`` chats due soonest, as :meth:`due`
        finds them, in one statement (the rows are found once, not read then found again by
        their ids). It returns, per chat read, its facts as they were before the claim
        (:meth:`states` of all but the last column), then the attempt id reserved for it:
        none for a chat under an expired claim, left as it is for the caller to resolve. The
        caller checks the claimed chats against the rule and gives back (``reschedule``)
        those it finds not due after all."""
        ...

    def chats(self, chat_ids: Sequence[str], *, lock: bool = False) -> list[Statement]:
        """The named chats (those that exist); ``lock`` skips rows locked by others."""
        ...

    def reschedule(self, rows: Sequence[tuple[str, datetime | None]]) -> Statement:
        """Correct ``next_share_at`` of chats found not due after all, and drop the claim
        :meth:`claim_due` took on them (none for chats read by :meth:`chats`)."""
        ...

    def claim(
        self,
        chats: Sequence[ChatState],
        *,
        now: datetime,
        instance: str,
        lease_end: datetime,
        forced: bool,
    ) -> list[Statement]:
        """Claim ``chats``: one attempt id reserved per chat, and the claim columns (the
        intent: who, the attempt id, since when, forced, the lease) written on each chat; its
        ``next_share_at`` is left as it is (no indexed column changes: on PostgreSQL a HOT
        update). No attempt row: it is written with the outcome. The statements that return
        rows return (chat id, attempt id) of each chat claimed."""
        ...

    def insert_attempts(self, rows: Sequence[AttemptRow]) -> Statement:
        """Write finished attempts; an id already written (the claim resolved elsewhere as
        ambiguous) keeps its verdict."""
        ...

    def update_chats(self, rows: Sequence[ChatUpdate], now: datetime) -> Statement:
        """Write each chat's new facts and ``next_share_at``, and drop its claim."""
        ...
