"""messages.content as the table's last column on SQLite

SQLite stores a row as one record, and a zeroblob() inserted to be filled by incremental
BLOB I/O (app.db.blobs) stays unallocated only as the record's last field with data; with
queue_id after it (0002 added that column at the end), inserting a 25 MiB message allocated
the zeroes twice over. The table is rebuilt with content last. PostgreSQL keeps large
values out of line (TOAST) whatever the order: nothing to do there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Copies every row once (foreign keys are off while migrating: deliveries stay).
    with op.batch_alter_table(
        "messages", recreate="always", partial_reordering=[("queue_id", "size", "content")]
    ):
        pass


def downgrade() -> None:
    pass  # the order is no schema change: any order serves the earlier revisions
