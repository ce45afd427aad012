"""chat leases: one worker at a time handles a chat's kept updates, in order, across
processes (Telegram by webhook behind several workers)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 20:20:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_leases",
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("chat_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        # Keyed by the chat: an id sequence would be used up by the upserts (one per renewal).
        sa.PrimaryKeyConstraint("channel", "chat_id"),
    )


def downgrade() -> None:
    op.drop_table("chat_leases")
