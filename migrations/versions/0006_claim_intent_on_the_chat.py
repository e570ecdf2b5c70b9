"""the claim's intent kept on the chat: no attempt row until the outcome

The claim columns of a chat (claimed_by, claim_attempt_id, claim_expires_at, and now
claim_started_at and claim_forced) are the durable intent of a share in flight; the attempt's
row is written once, with its outcome. On SQLite the attempts table becomes AUTOINCREMENT, so
that a claim reserves a batch of attempt ids by moving its sqlite_sequence row.

Upgrade moves each open ``started`` attempt into its chat's claim columns (and deletes it);
a ``started`` attempt no claim points to is closed as ambiguous, as the daemon did. Downgrade
writes the open claims back as ``started`` attempts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 15:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import scheduler.ledger.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = scheduler.ledger.models.UTCDateTime(timezone=True)

chats = sa.table(
    "chats",
    sa.column("chat_id", sa.String),
    sa.column("line", sa.String),
    sa.column("claimed_by", sa.String),
    sa.column("claim_attempt_id", sa.BigInteger),
    sa.column("claim_started_at", UTC_TIME),
    sa.column("claim_forced", sa.Boolean),
)
attempts = sa.table(
    "share_attempts",
    sa.column("id", sa.BigInteger),
    sa.column("chat_id", sa.String),
    sa.column("line", sa.String),
    sa.column("started_at", UTC_TIME),
    sa.column("finished_at", UTC_TIME),
    sa.column("outcome", sa.String),
    sa.column("error_message", sa.Text),
    sa.column("instance", sa.String),
    sa.column("tries", sa.Integer),
    sa.column("forced", sa.Boolean),
)


def _recreate_attempts(autoincrement: bool) -> None:
    """SQLite only: the attempts table rebuilt with or without AUTOINCREMENT (rows kept)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "share_attempts",
        recreate="always",
        table_kwargs={"sqlite_autoincrement": autoincrement},
    ):
        pass


def upgrade() -> None:
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_started_at", UTC_TIME, nullable=True))
        batch_op.add_column(sa.Column("claim_forced", sa.Boolean(), nullable=True))
    # Before the open attempts leave it: the counter starts above every id given so far.
    _recreate_attempts(True)

    def open_attempt(column: sa.ColumnClause[object]) -> sa.ScalarSelect[object]:
        return (
            sa.select(column)
            .where(attempts.c.id == chats.c.claim_attempt_id)
            .where(attempts.c.outcome == "started")
            .scalar_subquery()
        )

    op.execute(
        sa.update(chats)
        .where(chats.c.claim_attempt_id.is_not(None))
        .values(
            claim_started_at=open_attempt(attempts.c.started_at),
            claim_forced=open_attempt(attempts.c.forced),
        )
    )
    op.execute(
        sa.delete(attempts)
        .where(attempts.c.outcome == "started")
        .where(
            attempts.c.id.in_(
                sa.select(chats.c.claim_attempt_id).where(chats.c.claim_attempt_id.is_not(None))
            )
        )
    )
    op.execute(
        sa.update(attempts)
        .where(attempts.c.outcome == "started")
        .values(
            outcome="ambiguous",
            finished_at=attempts.c.started_at,
            error_message="attempt left open without a claim",
        )
    )


def downgrade() -> None:
    op.execute(
        sa.insert(attempts).from_select(
            ["id", "chat_id", "line", "started_at", "outcome", "instance", "tries", "forced"],
            sa.select(
                chats.c.claim_attempt_id,
                chats.c.chat_id,
                chats.c.line,
                chats.c.claim_started_at,
                sa.literal("started"),
                sa.func.coalesce(chats.c.claimed_by, ""),
                sa.literal(0),
                sa.func.coalesce(chats.c.claim_forced, sa.false()),
            )
            .where(chats.c.claim_attempt_id.is_not(None))
            .where(chats.c.claim_started_at.is_not(None))
            .where(~sa.exists().where(attempts.c.id == chats.c.claim_attempt_id)),
        )
    )
    _recreate_attempts(False)
    for column in ("claim_forced", "claim_started_at"):
        if op.get_bind().dialect.name == "sqlite":
            # Not a batch rebuild of chats: dropping the old table would cascade to the
            # attempts (their foreign key deletes on cascade).
            op.execute(f"ALTER TABLE chats DROP COLUMN {column}")
        else:
            op.drop_column("chats", column)
