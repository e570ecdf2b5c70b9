"""room in the chats' pages for the claim's row version (fillfactor), on PostgreSQL

A claim changes no indexed column of its chat, so PostgreSQL can write it as a HOT update
(no new index entries) when the chat's page has room for the new row version. Pages of the
chats table are filled to ``FILLFACTOR`` percent by inserts, keeping the rest for updates.
SQLite has no such setting: nothing changes there.

Existing pages are not rewritten (that would lock the table for as long as it takes): they
gain room as their rows are updated and pruned, new pages get it at once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 18:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in scheduler.ledger.models.CHATS_FILLFACTOR at this revision (a migration keeps its
# own value: a later change of the model's must not change what this revision did).
FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE chats SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE chats RESET (fillfactor)")
