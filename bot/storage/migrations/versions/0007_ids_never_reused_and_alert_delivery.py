"""ids never reused (SQLite tables rebuilt with AUTOINCREMENT); alert delivery per case

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 19:00:00

SQLite hands out max(id) + 1, so after the newest row is deleted (a patient's /forget) its
id comes back: the next case would inherit the forgotten one's audit trail and the doctors'
old alert buttons. AUTOINCREMENT never reuses an id. Other databases already never do.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Parents before children; env.py switches SQLite's foreign keys off around the rebuild.
TABLES = (
    "patients",
    "conversations",
    "messages",
    "escalations",
    "audit_events",
    "channel_updates",
    "staff_users",
    "staff_sessions",
    "prompt_versions",
    "prompt_drafts",
)


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alert_error", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("alert_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("alert_retry_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_escalations_alert_retry_at"), ["alert_retry_at"], unique=False
        )
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_escalations_alert_retry_at"))
        batch_op.drop_column("alert_retry_at")
        batch_op.drop_column("alert_failures")
        batch_op.drop_column("alert_error")
