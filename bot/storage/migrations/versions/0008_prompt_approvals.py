"""four-eyes approval of safety-critical prompt changes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prompt_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("restored", sa.Integer(), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("author_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("prompt_approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prompt_approvals_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_prompt_approvals_status"), ["status"], unique=False)
    with op.batch_alter_table("prompt_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("approved_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("prompt_versions", schema=None) as batch_op:
        batch_op.drop_column("approved_by")
    with op.batch_alter_table("prompt_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prompt_approvals_status"))
        batch_op.drop_index(batch_op.f("ix_prompt_approvals_name"))
    op.drop_table("prompt_approvals")
