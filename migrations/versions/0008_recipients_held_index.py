"""a partial index of the recipients held (opted out or blocked)

The ledger gauges count the recipients opted out and blocked with every card check. The
recipients table has a row for everyone who ever wrote in, so the count was a scan of the
whole table; the held ones are few, and this index holds only them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 04:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in scheduler.ledger.models.RECIPIENTS_HELD at this revision.
HELD = "opted_out_at IS NOT NULL OR blocked_at IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_recipients_held",
        "recipients",
        ["handle"],
        postgresql_where=sa.text(HELD),
        sqlite_where=sa.text(HELD),
    )


def downgrade() -> None:
    op.drop_index("ix_recipients_held", table_name="recipients")
