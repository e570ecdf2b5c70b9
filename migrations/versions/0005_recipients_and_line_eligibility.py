"""recipients (account-wide opt-outs and blocks) and line eligibility

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import scheduler.ledger.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = scheduler.ledger.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recipients",
        sa.Column("handle", sa.String(length=320), nullable=False),
        sa.Column("opted_out_at", UTC_TIME, nullable=True),
        sa.Column("last_inbound_at", UTC_TIME, nullable=True),
        sa.Column("blocked_at", UTC_TIME, nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("handle", name=op.f("pk_recipients")),
    )
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ineligible_since", UTC_TIME, nullable=True))
        batch_op.add_column(sa.Column("ineligible_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("probe_at", UTC_TIME, nullable=True))
        batch_op.add_column(
            sa.Column("probe_backoff_seconds", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("eligibility_changed_at", UTC_TIME, nullable=True))
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chats_recipients"), ["recipients"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chats_recipients"))
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_column("eligibility_changed_at")
        batch_op.drop_column("probe_backoff_seconds")
        batch_op.drop_column("probe_at")
        batch_op.drop_column("ineligible_reason")
        batch_op.drop_column("ineligible_since")
    op.drop_table("recipients")
