"""initial ledger

Revision ID: 0001
Revises:
Create Date: 2026-11-27 08:42:29.090731
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import scheduler.ledger.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "chats",
        sa.Column("chat_id", sa.String(length=128), nullable=False),
        sa.Column("line", sa.String(length=16), nullable=True),
        sa.Column("recipients", sa.Text(), server_default="", nullable=False),
        sa.Column("is_group", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("service", sa.String(length=16), nullable=True),
        sa.Column(
            "first_outbound_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_outbound_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_inbound_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_shared_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("share_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("not_before", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_share_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claim_attempt_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "claim_expires_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_chats")),
    )
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chats_line"), ["line"], unique=False)
        batch_op.create_index(batch_op.f("ix_chats_next_share_at"), ["next_share_at"], unique=False)

    op.create_table(
        "lines",
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("desired_first_name", sa.String(length=100), nullable=True),
        sa.Column("desired_last_name", sa.String(length=100), nullable=True),
        sa.Column("desired_image_url", sa.Text(), nullable=True),
        sa.Column("card_state", sa.String(length=16), server_default="unknown", nullable=False),
        sa.Column("card_first_name", sa.String(length=100), nullable=True),
        sa.Column("card_last_name", sa.String(length=100), nullable=True),
        sa.Column("card_image_url", sa.Text(), nullable=True),
        sa.Column(
            "card_checked_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "card_active_since", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "card_state_since", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("card_write_log", sa.Text(), server_default="[]", nullable=False),
        sa.Column(
            "card_next_write_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("created_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_lines")),
    )
    op.create_table(
        "webhook_events",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column(
            "received_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_webhook_events")),
    )
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_events_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "share_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("chat_id", sa.String(length=128), nullable=False),
        sa.Column("line", sa.String(length=16), nullable=True),
        sa.Column("started_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("trace_id", sa.String(length=128), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("tries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("instance", sa.String(length=128), nullable=False),
        sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["chats.chat_id"],
            name=op.f("fk_share_attempts_chat_id_chats"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_attempts")),
    )
    with op.batch_alter_table("share_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_share_attempts_chat_id_started_at", ["chat_id", "started_at"], unique=False
        )
        batch_op.create_index(
            "ix_share_attempts_outcome_started_at", ["outcome", "started_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("share_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_share_attempts_outcome_started_at")
        batch_op.drop_index("ix_share_attempts_chat_id_started_at")

    op.drop_table("share_attempts")
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_events_received_at"))

    op.drop_table("webhook_events")
    op.drop_table("lines")
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chats_next_share_at"))
        batch_op.drop_index(batch_op.f("ix_chats_line"))

    op.drop_table("chats")
