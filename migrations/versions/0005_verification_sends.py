"""verification_sends: when each verification message went out, for the resend limits

POST /v1/destinations/{id}/resend mailed a new link every time it was called: whoever
held a token could have us mail a third party's inbox at the API's rate. Resends are now
limited per destination (one per 5 minutes, 10 a day), counted here so that every node
and every restart sees the same count. Existing destinations start with none counted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "verification_sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("destination_id", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
            name=op.f("fk_verification_sends_destination_id_destinations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_sends")),
    )
    op.create_index(
        op.f("ix_verification_sends_destination_id"),
        "verification_sends",
        ["destination_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_verification_sends_destination_id"), table_name="verification_sends")
    op.drop_table("verification_sends")
