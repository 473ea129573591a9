"""Alembic migrations of the run registry's tables (studio/registry_db.py applies them when a registry opens)."""
