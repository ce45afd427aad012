"""Alembic environment: runs migrations on the engine CareBot hands over."""

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

import bot.storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

engine = context.config.attributes["engine"]
sqlite = engine.dialect.name == "sqlite"
with engine.connect() as connection:
    if sqlite:
        # A table rebuilt in batch mode is dropped and recreated: with foreign keys on, the
        # drop would fail (or cascade). Off for the migration (it only takes effect outside
        # a transaction), checked afterwards, on again for this pooled connection.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # ends SQLAlchemy's autobegun block; the PRAGMA began nothing
    with connection.begin():
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=sqlite,
        )
        context.run_migrations()
    if sqlite:
        broken = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        if broken:
            raise RuntimeError(f"migration left {len(broken)} rows with broken references")
