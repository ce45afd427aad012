"""one-time codes linking staff accounts to Telegram accounts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "telegram_link_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("telegram_link_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_staff_users_telegram_link_hash"), ["telegram_link_hash"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staff_users_telegram_link_hash"))
        batch_op.drop_column("telegram_link_expires_at")
        batch_op.drop_column("telegram_link_hash")
