"""card write bookkeeping and backfill state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:05:05.160287
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import scheduler.ledger.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backfill_state",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("since", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "completed_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("chats_seen", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_backfill_state")),
    )
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("card_write_failures", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "card_written_at", scheduler.ledger.models.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_column("card_written_at")
        batch_op.drop_column("card_write_failures")

    op.drop_table("backfill_state")
