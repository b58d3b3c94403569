"""The migrations create exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engine.schema import metadata


def test_migrated_schema_matches_the_declared_tables(engine):
    with engine.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrate_is_idempotent(engine):
    engine.migrate()
    engine.migrate()
    assert engine.list_definitions() == []
