"""the clinical record apart from the chat transcript: legal holds, erasure requests; a
delivery cursor for administrators' security alerts; four eyes on guideline files; the audit
chain's head row made here, so appenders always have a row to lock

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 17:20:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "patients", sa.Column("transcript_erased_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("placed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_legal_holds_patient_id"), ["patient_id"], unique=False)
    op.create_table(
        "erasure_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("erasure_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_erasure_requests_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_erasure_requests_status"), ["status"], unique=False)

    op.create_table(
        "delivery_cursors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sqlite_autoincrement=True,
    )
    # Two first appenders found no head row to lock and both inserted one (PostgreSQL).
    op.execute(
        sa.text(
            "INSERT INTO audit_chain_head (id, chain_hash, event_id) "
            "SELECT 1, :genesis, NULL WHERE NOT EXISTS (SELECT 1 FROM audit_chain_head)"
        ).bindparams(genesis="0" * 64)
    )
    op.create_table(
        "guideline_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("proposed_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("proposer_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("guideline_approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guideline_approvals_digest"), ["digest"], unique=False)
        batch_op.create_index(batch_op.f("ix_guideline_approvals_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("guideline_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guideline_approvals_status"))
        batch_op.drop_index(batch_op.f("ix_guideline_approvals_digest"))
    op.drop_table("guideline_approvals")
    op.drop_table("delivery_cursors")
    with op.batch_alter_table("erasure_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_requests_status"))
        batch_op.drop_index(batch_op.f("ix_erasure_requests_patient_id"))
    op.drop_table("erasure_requests")
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_holds_patient_id"))
    op.drop_table("legal_holds")
    with op.batch_alter_table(
        "patients", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.drop_column("transcript_erased_at")
