"""The audit log is the decision log: who did what, when, with which data; append-only."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine.schema import events
from tests.conftest import only_task

APPROVAL = "engine/bench/approval.bpmn"


def test_history_records_actors_data_and_gateway_decisions(team):
    team.deploy([APPROVAL])
    instance = team.start("bench_approval", {"client": "ACME"}, actor="pat")
    task = only_task(instance)
    team.claim(task["id"], "pat")
    instance = team.complete(task["id"], "pat", {"doc": "report.pdf"})
    instance = team.complete(only_task(instance)["id"], "quinn", {"approved": True, "comment": "good"})
    history = team.history(instance["id"])
    types = [e["type"] for e in history]
    assert types[:4] == ["instance_started", "task_created", "task_claimed", "task_completed"]
    assert history[0]["actor"] == "pat" and history[0]["data"]["data"] == {"client": "ACME"}
    decision = next(e for e in history if e["type"] == "task_completed" and e["actor"] == "quinn")
    assert decision["data"]["data"] == {"approved": True, "comment": "good"}
    assert decision["element_id"] == "review"
    gateway = next(e for e in history if e["type"] == "gateway_decision")
    assert (gateway["element_id"], gateway["data"]["taken"]) == ("gw_review", ["score"])
    assert [e["id"] for e in history] == sorted(e["id"] for e in history)


@pytest.mark.parametrize("statement", ["UPDATE events SET actor = 'mallory'", "DELETE FROM events", "TRUNCATE events"])
def test_events_cannot_be_rewritten(team, statement):
    if statement.startswith("TRUNCATE") and team.db.is_sqlite:
        statement = "DELETE FROM events"  # SQLite has no TRUNCATE; DELETE is what it would run
    team.deploy([APPROVAL])
    team.start("bench_approval", {}, actor="pat")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with team.db.write() as conn:
            conn.exec_driver_sql(statement)
    with team.db.read() as conn:
        actors = set(conn.execute(sa.select(events.c.actor)).scalars())
    assert "mallory" not in actors and "pat" in actors
