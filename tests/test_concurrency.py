"""One writer per instance: simultaneous completions on real, separate connections.

Each contender has its own engine (own connection pool and workflow cache), like two server
processes; a barrier releases them together. Exactly one completion may win, the other must
get a Conflict, and the instance must hold exactly one downstream task.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from engine.schema import human_tasks
from tests.conftest import only_task, race

APPROVAL = "engine/bench/approval.bpmn"
ROUNDS = 8


def test_two_people_complete_the_same_task_at_once(team, database_url):
    team.add_user("pia", groups_=["project_manager"])
    team.deploy([APPROVAL])
    for _ in range(ROUNDS):
        instance = team.start("bench_approval", {})
        task_id = only_task(instance)["id"]
        results = race(
            database_url,
            [("pat", {"doc": "a"}), ("pia", {"doc": "b"})],
            lambda eng, user, data, task_id=task_id: eng.complete(task_id, user, data),
        )
        outcomes = sorted(r[0] for r in results)
        assert outcomes == ["conflict", "ok"], results
        after = team.get_instance(instance["id"])
        assert [t["element_id"] for t in after["tasks"]] == ["review"]
        winner = next(r[1] for r in results if r[0] == "ok")
        assert after["data"]["doc"] == winner["data"]["doc"]
        with team.db.read() as conn:
            rows = conn.execute(
                sa.select(human_tasks.c.element_id, human_tasks.c.status).where(
                    human_tasks.c.instance_id == instance["id"]
                )
            ).all()
        assert sorted(rows) == [("review", "open"), ("submit", "completed")]


def test_two_people_claim_the_same_task_at_once(team, database_url):
    team.add_user("pia", groups_=["project_manager"])
    team.deploy([APPROVAL])
    for _ in range(ROUNDS):
        task_id = only_task(team.start("bench_approval", {}))["id"]
        results = race(database_url, [("pat",), ("pia",)], lambda eng, user, task_id=task_id: eng.claim(task_id, user))
        assert sorted(r[0] for r in results) == ["conflict", "ok"], results
        winner = next(r[1] for r in results if r[0] == "ok")
        assert team.get_task(task_id)["assignee"] == winner["assignee"]


def test_parallel_branches_completed_at_once_both_count(team, database_url):
    """Different tasks of one instance: both succeed (one waits for the other), the join fires once."""
    from tests.conftest import BPMN

    team.deploy([BPMN / "parallel_loop.bpmn"])
    for _ in range(ROUNDS // 2):
        instance = team.start("parallel_loop", {"repeat": False})
        tasks = {t["element_id"]: t["id"] for t in instance["tasks"]}
        results = race(
            database_url,
            [("quinn", tasks["qa"]), ("casey", tasks["client_check"])],
            lambda eng, user, task_id: eng.complete(task_id, user, {}),
        )
        assert [r[0] for r in results] == ["ok", "ok"], results
        assert team.get_instance(instance["id"])["status"] == "completed"


def test_sqlite_write_connections_are_kept_per_thread_and_closed_when_the_thread_ends(sqlite_engine):
    """Each thread reuses its write connection; a threaded server (a thread per request) must
    not pile up connections: those of ended threads are closed when a new thread starts writing."""
    db = sqlite_engine.db

    def write_once():
        with db.write() as conn:
            conn.exec_driver_sql("SELECT 1")

    write_once()
    write_once()
    assert db.engine.pool.checkedout() == 1  # the main thread's kept connection, reused
    for _ in range(5):
        worker = threading.Thread(target=write_once)
        worker.start()
        worker.join()
        # each new thread closes the connections of the ended ones: the main thread's, plus the last one's
        assert db.engine.pool.checkedout() == 2
    with pytest.raises(RuntimeError):
        with db.write():
            raise RuntimeError("rolled back")
    write_once()  # the kept connection is usable after a rollback
    sqlite_engine.close()
    assert db.engine.pool.checkedout() == 0


@pytest.mark.parametrize("statement", ["core", "driver"])
def test_a_failed_write_transaction_leaves_nothing_behind(engine, statement):
    """Whether a transaction's statements went through SQLAlchemy Core or straight to the driver
    (the hot path), an exception rolls all of it back, no after-commit callback runs, and the
    (kept) connection serves the next transaction; a successful one stores both kinds."""
    from engine import fastsql
    from engine.db import after_commit
    from engine.schema import groups

    insert = fastsql.Statement("INSERT INTO groups (name) VALUES (:name)")
    ran = []

    def add(conn, name):
        after_commit(conn, lambda: ran.append(name))
        if statement == "core":
            conn.execute(groups.insert().values(name=name))
        else:
            fastsql.execute(conn, insert, {"name": name})

    def names():
        with engine.db.read() as conn:
            return set(conn.execute(sa.select(groups.c.name)).scalars())

    before = names()
    with pytest.raises(RuntimeError):
        with engine.db.write() as conn:
            add(conn, "doomed")
            fastsql.execute(conn, insert, {"name": "doomed_too"})
            raise RuntimeError("fails after writing")
    assert names() == before and ran == []
    with engine.db.write() as conn:
        add(conn, "kept")
        conn.execute(groups.insert().values(name="kept_core"))
    assert names() == before | {"kept", "kept_core"} and ran == ["kept"]
