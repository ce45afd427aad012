"""room for sealed second-factor secrets (encrypted with the message keys)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 14:45:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite rebuilds the table to change a column: keep its ids never reused (0007).
    with op.batch_alter_table(
        "staff_users", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        for column in ("totp_secret", "totp_pending_secret"):
            batch_op.alter_column(
                column,
                existing_type=sqlmodel.sql.sqltypes.AutoString(length=64),
                type_=sqlmodel.sql.sqltypes.AutoString(length=256),
                existing_nullable=True,
            )


def downgrade() -> None:
    # SQLite rebuilds the table to change a column: keep its ids never reused (0007).
    with op.batch_alter_table(
        "staff_users", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        for column in ("totp_secret", "totp_pending_secret"):
            batch_op.alter_column(
                column,
                existing_type=sqlmodel.sql.sqltypes.AutoString(length=256),
                type_=sa.String(length=64),
                existing_nullable=True,
            )
