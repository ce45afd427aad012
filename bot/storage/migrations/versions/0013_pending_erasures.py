"""session memory still to erase (the memory store was down at /forget)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 14:40:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("pending_erasures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_erasures_chat_key"), ["chat_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("pending_erasures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_erasures_chat_key"))
    op.drop_table("pending_erasures")
