"""Alembic migrations: the only way Tegata's schema changes."""
