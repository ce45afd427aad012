"""Persistent data: SQLModel tables, Alembic migrations and the repository the engine uses."""
