"""message_parts: a large message's content in slices, on PostgreSQL

asyncpg holds a bytea parameter whole in its write buffer and a bytea result whole in its
read buffer, besides the caller's copy: a 25 MiB message cost the SMTP process and the
worker three times its size each. From app.db.parts.PARTS_FROM octets the content goes
into slices of PART_OCTETS, written and read one at a time. SQLite has the table too
(one schema) but uses incremental BLOB I/O instead (app.db.blobs).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_parts",
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_parts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "seq", name=op.f("pk_message_parts")),
    )


def downgrade() -> None:
    op.drop_table("message_parts")
