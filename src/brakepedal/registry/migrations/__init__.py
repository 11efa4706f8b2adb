"""Alembic migrations of the registry's database (the log's tables included)."""
