"""The migrations create exactly the schema the code declares, on both backends."""

from __future__ import annotations

import sqlalchemy as sa
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


def test_upgrade_from_0005_keeps_the_inbox_and_running_instances(database_url):
    """A database in use at the previous schema: after `sdf migrate` (0006, partial inbox
    indexes) its open tasks are still listed and its instances continue."""
    from alembic import command
    from alembic.config import Config

    from engine.db import MIGRATIONS_DIR
    from tests.conftest import BPMN, add_team, make_engine, only_task

    engine = make_engine(database_url)
    try:
        add_team(engine)
        engine.deploy([BPMN / "review_loop.bpmn"])
        instance = engine.start("review_loop", {})
        with engine.db.engine.begin() as conn:  # back to the previous revision, as an older sdf left it
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005")
        assert {"ix_human_tasks_status_group", "ix_human_tasks_status_assignee"} <= _inbox_indexes(engine)
        engine.migrate()
        names = _inbox_indexes(engine)
        assert {"ix_human_tasks_open_group", "ix_human_tasks_open_assignee"} <= names
        assert not names & {"ix_human_tasks_status_group", "ix_human_tasks_status_assignee"}
        task = only_task(instance)
        assert [t["id"] for t in engine.list_tasks(user="pat")] == [task["id"]]
        after = engine.complete(task["id"], "pat", {"title": "Status report", "hours": 4})
        assert [t["id"] for t in engine.list_tasks(user="pat")] == []
        assert [t["id"] for t in engine.list_tasks(user="quinn")] == [only_task(after)["id"]]
    finally:
        engine.close()


def _inbox_indexes(engine) -> set[str]:
    with engine.db.engine.connect() as conn:
        return {ix["name"] for ix in sa.inspect(conn).get_indexes("human_tasks")}
