"""the bot's messages in doctors' chats, so erasure reaches them

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 05:20:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "doctor_chat_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("doctor_chat_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_doctor_chat_messages_case_id"), ["case_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("doctor_chat_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_doctor_chat_messages_case_id"))
    op.drop_table("doctor_chat_messages")
