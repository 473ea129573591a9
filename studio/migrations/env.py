"""Alembic's environment for the registry. The studio runs it on the connection it opened (`registry_db._upgrade`
passes it in ``config.attributes["connection"]``, inside its own locked transaction): opening a registry migrates
it, there is nothing to run by hand. Run from the alembic command line, it migrates the database
``STUDIO_REGISTRY_URL`` names (else the SQLite registry of the current folder)."""

from __future__ import annotations

from alembic import context

from studio.registry_db import metadata, registry_url

connection = context.config.attributes.get("connection")
if connection is None:  # run from the alembic command line: the registry the environment names
    from pathlib import Path

    from sqlalchemy import create_engine

    with create_engine(registry_url(Path.cwd())).begin() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
