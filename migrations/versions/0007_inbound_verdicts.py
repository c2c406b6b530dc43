"""inbound verdicts: SPF, DKIM, DMARC, ARC and the spam filter's, on messages and activity

Each message keeps what the inbound checks found (app.inbound_auth) and whether its
sender was proven, which decides whether a failure bounces to it (no backscatter); each
activity row keeps the verdicts, filterable. On SQLite, messages is rebuilt so that its
content stays the last column (see 0003).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERDICTS = ("spf", "dkim", "dmarc", "arc")


def _columns() -> list[sa.Column[object]]:
    return [
        *(sa.Column(name, sa.String(length=16), nullable=True) for name in VERDICTS),
        sa.Column("spam_score", sa.Float(), nullable=True),
        sa.Column("spam_action", sa.String(length=16), nullable=True),
    ]


def upgrade() -> None:
    order = ("size", *VERDICTS, "spam_score", "spam_action", "sender_authenticated", "content")
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "messages",
        recreate="always" if sqlite else "auto",
        partial_reordering=[order] if sqlite else None,
    ) as batch:
        for column in _columns():
            batch.add_column(column)
        batch.add_column(sa.Column("sender_authenticated", sa.Boolean(), nullable=True))
    with op.batch_alter_table("activity") as batch:
        for column in _columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("activity") as batch:
        for name in (*VERDICTS, "spam_score", "spam_action"):
            batch.drop_column(name)
    with op.batch_alter_table("messages") as batch:
        for name in (*VERDICTS, "spam_score", "spam_action", "sender_authenticated"):
            batch.drop_column(name)
