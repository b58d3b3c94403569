"""Instances: start data and business key, statuses, suspend/resume/terminate, bad input."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine import transitions
from engine.errors import Forbidden, InvalidInput, InvalidState, NotFound, SdfError
from engine.schema import instances
from tests.conftest import BPMN, add_team, make_engine, only_task

APPROVAL = "engine/bench/approval.bpmn"


def loaded_workflow(engine, instance_id: int):
    """The instance's workflow as a transition would open it (from the cache, else the row)."""
    with engine.db.read() as conn:
        row = transitions.lock_instance(engine, conn, instance_id)
        return transitions.open_transition(engine, conn, row, None).workflow


def store_in_older_format(engine, instance_id: int) -> str:
    """Rewrite the instance's state row as the previous release wrote it (SpiffWorkflow's task
    dictionaries, standard-library JSON); return that text."""
    older = engine.serializer.dump_state_generic(loaded_workflow(engine, instance_id))
    with engine.db.write() as conn:
        conn.execute(instances.update().where(instances.c.id == instance_id).values(state=older))
    return older


@pytest.fixture
def approval(team):
    team.deploy([APPROVAL])
    return team


def test_start_keeps_data_and_business_key_and_opens_the_first_task(approval):
    instance = approval.start("bench_approval", {"client": "ACME"}, business_key="ACME-7", actor="pat")
    assert instance["status"] == "running"
    assert instance["business_key"] == "ACME-7"
    assert instance["data"] == {"client": "ACME"}
    task = only_task(instance)
    assert (task["element_id"], task["candidate_group"], task["status"]) == ("submit", "project_manager", "open")
    listed = approval.list_instances(business_key="ACME-7")
    assert [i["id"] for i in listed] == [instance["id"]]


def test_state_is_stored_without_the_spec(approval):
    instance = approval.start("bench_approval", {})
    with approval.db.read() as conn:
        state = conn.execute(sa.select(instances.c.state).where(instances.c.id == instance["id"])).scalar()
    assert '"spec"' not in state and "subprocess_specs" not in state
    assert len(state) < 8000


def test_instance_survives_a_new_engine(approval, database_url):
    """Nothing lives only in memory: a second engine (another process) continues the instance."""
    from tests.conftest import make_engine

    instance = approval.start("bench_approval", {"x": 1})
    approval.complete(only_task(instance)["id"], "pat", {"doc": "d"})
    other = make_engine(database_url)
    try:
        loaded = other.get_instance(instance["id"])
        after = other.complete(only_task(loaded)["id"], "quinn", {"approved": False})
    finally:
        other.close()
    assert after["status"] == "completed"
    assert after["data"] == {"x": 1, "doc": "d", "approved": False}


def test_state_written_by_the_previous_release_still_loads(approval, database_url):
    """Rows stored in the earlier format (sdf-1: tasks as SpiffWorkflow's full dictionaries)
    are read by a new engine and continue; the next save writes the compact format."""
    instance = approval.start("bench_approval", {"x": 1})
    approval.complete(only_task(instance)["id"], "pat", {"doc": "d"})
    assert '"format":"sdf-1/' in store_in_older_format(approval, instance["id"])
    other = make_engine(database_url)
    try:
        after = other.complete(only_task(other.get_instance(instance["id"]))["id"], "quinn", {"approved": True})
        assert after["status"] == "running" and only_task(after)["element_id"] == "accept"
        assert after["data"] == {"x": 1, "doc": "d", "approved": True, "quality": 5}
    finally:
        other.close()
    with approval.db.read() as conn:
        state = conn.execute(sa.select(instances.c.state).where(instances.c.id == instance["id"])).scalar()
    assert '"format":"sdf-2/' in state


def test_unknown_state_format_is_refused_clearly(approval, database_url):
    instance = approval.start("bench_approval", {})
    with approval.db.write() as conn:
        conn.execute(
            instances.update().where(instances.c.id == instance["id"]).values(state='{"format":"sdf-9","tasks":[]}')
        )
    other = make_engine(database_url)
    try:
        with pytest.raises(SdfError, match="format 'sdf-9'"):
            other.complete(only_task(instance)["id"], "pat", {})
    finally:
        other.close()


def test_suspend_blocks_work_until_resumed(approval):
    instance = approval.start("bench_approval", {})
    task = only_task(instance)
    assert approval.suspend(instance["id"], "dana")["status"] == "suspended"
    with pytest.raises(InvalidState, match="suspended"):
        approval.complete(task["id"], "pat", {})
    with pytest.raises(InvalidState, match="suspended"):
        approval.claim(task["id"], "pat")
    with pytest.raises(InvalidState):
        approval.suspend(instance["id"], "dana")
    assert approval.resume(instance["id"], "dana")["status"] == "running"
    assert approval.complete(task["id"], "pat", {})["status"] == "running"


def test_terminate_cancels_open_tasks(approval):
    instance = approval.start("bench_approval", {})
    task = only_task(instance)
    after = approval.terminate(instance["id"], "dana", reason="client cancelled the project")
    assert after["status"] == "terminated"
    assert after["tasks"] == []
    assert approval.get_task(task["id"])["status"] == "cancelled"
    assert approval.list_tasks(user="pat") == []
    with pytest.raises(InvalidState):
        approval.resume(instance["id"])
    history = [e["type"] for e in approval.history(instance["id"])]
    assert history[-2:] == ["instance_terminated", "task_cancelled"]


def test_unknown_ids_are_not_found(approval):
    with pytest.raises(NotFound):
        approval.get_instance(4242)
    with pytest.raises(NotFound):
        approval.suspend(4242)
    with pytest.raises(NotFound):
        approval.complete(4242, "pat", {})
    with pytest.raises(NotFound):
        approval.retry_incident(4242)


def test_start_data_must_be_an_object(approval):
    with pytest.raises(InvalidInput):
        approval.start("bench_approval", ["not", "an", "object"])
    with pytest.raises(NotFound, match="unknown user"):
        approval.start("bench_approval", {}, actor="nobody")


def test_instance_in_a_call_activity_shows_the_child_task(team):
    team.deploy([BPMN / "child.bpmn", BPMN / "parent.bpmn"])
    instance = team.start("project_intake", {"project": "P1"})
    assert only_task(instance)["element_id"] == "assess"
    assert team.get_instance(instance["id"])["status"] == "running"


def test_fast_state_serializer_matches_spiffworkflows_own(team):
    """engine.serializer writes tasks in a compact form of its own for speed; read back they
    must equal what the library's converters write."""
    from datetime import UTC, datetime
    from decimal import Decimal

    team.deploy([BPMN / "child.bpmn", BPMN / "parent.bpmn", BPMN / "parallel_loop.bpmn"])
    started = [
        team.start("project_intake", {"when": datetime(2026, 1, 2, tzinfo=UTC), "budget": Decimal("10.5")}),
        team.start("parallel_loop", {"repeat": True, "tags": ["a", "b"]}),
    ]
    team.complete(started[1]["tasks"][0]["id"], "quinn", {"nested": {"x": [1, 2]}})
    deltas = 0
    for instance in started:
        workflow = loaded_workflow(team, instance["id"])
        ours = team.serializer.state_document(team.serializer.dump_state(workflow))
        library = team.serializer.state_document(team.serializer.dump_state_generic(workflow))
        assert ours == library
        assert len(ours["tasks"]) > 5
        deltas += sum(1 for t in ours["tasks"].values() if t["delta"].get("updates") or t["delta"].get("deletions"))
    assert deltas  # the comparison covered data written as deltas


def test_values_scripts_create_survive_storage(team, tmp_path, database_url):
    from tests import processes
    from tests.conftest import make_engine

    script = "fee = Decimal('12.50') * 2\nstart_day = date(2026, 3, 1)\nstarted = datetime(2026, 3, 1, 9, 30)\n"
    team.deploy([processes.write(tmp_path, "typed.bpmn", processes.script_then_task("typed", script))])
    instance = team.complete(only_task(team.start("typed", {}))["id"], "pat", {})
    assert instance["data"]["fee"] == "25.00" and instance["data"]["start_day"] == "2026-03-01"
    other = make_engine(database_url)  # a fresh engine must read the stored state back
    try:
        after = other.complete(only_task(other.get_instance(instance["id"]))["id"], "pat", {})
    finally:
        other.close()
    assert after["status"] == "completed"
    assert after["data"]["fee"] == "25.00"


def test_typed_and_large_values_come_back_from_storage_as_they_were(team, tmp_path, database_url):
    """State is written with orjson; what it declines (integers beyond 64 bits) falls back to the
    standard library, and typed values keep their types through a fresh engine's load."""
    from datetime import date, datetime
    from decimal import Decimal

    from tests import processes

    script = (
        "fee = Decimal('12.50') * 2\nstart_day = date(2026, 3, 1)\nstarted = datetime(2026, 3, 1, 9, 30)\n"
        "big = 2 ** 70\nlabels = {'café': 'ü'}\n"
    )
    team.deploy([processes.write(tmp_path, "typed.bpmn", processes.script_then_task("typed", script))])
    instance = team.complete(only_task(team.start("typed", {}))["id"], "pat", {})
    assert instance["data"]["big"] == 2**70 and instance["data"]["labels"] == {"café": "ü"}
    other = make_engine(database_url)  # nothing cached: the state is read back from the row
    try:
        workflow = loaded_workflow(other, instance["id"])
    finally:
        other.close()
    data = next(t for t in workflow.tasks.values() if t.task_spec.name == "check").data
    assert data["fee"] == Decimal("25.00") and isinstance(data["fee"], Decimal)
    assert type(data["start_day"]) is date and data["start_day"] == date(2026, 3, 1)
    assert data["started"] == datetime(2026, 3, 1, 9, 30)
    assert data["big"] == 2**70 and data["labels"] == {"café": "ü"}


def test_state_text_with_nan_from_the_standard_library_still_loads(approval, database_url):
    """The standard library wrote a float NaN as a bare ``NaN`` (not JSON); such rows still load."""
    instance = approval.start("bench_approval", {"ratio": float("nan"), "n": 1})
    assert "NaN" in store_in_older_format(approval, instance["id"])
    other = make_engine(database_url)
    try:
        after = other.complete(only_task(instance)["id"], "pat", {"doc": "d"})
    finally:
        other.close()
    assert after["status"] == "running" and after["data"]["n"] == 1
    assert after["data"]["ratio"] is None  # JSON has no NaN: stored from now on as null


def test_instance_actions_require_a_known_user(approval):
    instance = approval.start("bench_approval", {})
    with pytest.raises(NotFound, match="unknown user 'nobody'"):
        approval.suspend(instance["id"], "nobody")
    assert approval.get_instance(instance["id"])["status"] == "running"
    with pytest.raises(NotFound):
        approval.terminate(instance["id"], "nobody")


def test_only_managers_the_starter_and_administrators_may_control_an_instance(approval):
    instance = approval.start("bench_approval", {}, actor="pat")
    for action in (approval.suspend, approval.terminate):
        with pytest.raises(Forbidden) as info:
            action(instance["id"], "eli")  # an engineer who works on it, but did not start it
        assert "eli may not" in info.value.message and "delivery_manager" in info.value.message
    assert approval.get_instance(instance["id"])["status"] == "running"
    assert approval.suspend(instance["id"], "pat")["status"] == "suspended"  # who started it
    assert approval.resume(instance["id"], "dana")["status"] == "running"  # a delivery manager
    assert approval.suspend(instance["id"], "root")["status"] == "suspended"  # an administrator
    with pytest.raises(Forbidden):
        approval.resume(instance["id"], "quinn")
    assert approval.resume(instance["id"])["status"] == "running"  # no actor: the operator at the machine


def test_the_manager_groups_are_a_setting(database_url):
    engine = make_engine(database_url, instance_managers="sponsor")
    try:
        add_team(engine)
        engine.add_user("sam", groups_=["sponsor"])
        engine.deploy([BPMN.parent.parent / "engine" / "bench" / "approval.bpmn"])
        instance = engine.start("bench_approval", {}, actor="pat")
        with pytest.raises(Forbidden):
            engine.suspend(instance["id"], "dana")  # delivery_manager is no longer a manager group
        assert engine.suspend(instance["id"], "sam")["status"] == "suspended"  # sponsor
    finally:
        engine.close()


def test_completion_check_agrees_with_spiffworkflow_at_every_step(approval):
    """The engine answers "is the workflow completed?" from the task map (the library walks the
    tree); the two must agree before, during and after a run, including a rejected branch."""
    from engine.runner import workflow_completed

    def check(instance):
        workflow = loaded_workflow(approval, instance["id"])
        assert workflow_completed(workflow) == workflow.is_completed()
        return workflow_completed(workflow)

    seen = []
    for answers in ([{"doc": "d"}, {"approved": True}, {}], [{"doc": "d"}, {"approved": False}]):
        instance = approval.start("bench_approval", {})
        seen.append(check(instance))
        for actor, answer in zip(("pat", "quinn", "casey"), answers, strict=False):  # a rejection ends early
            instance = approval.complete(only_task(instance)["id"], actor, answer)
            seen.append(check(instance))
        assert instance["status"] == "completed"
    assert seen == [False, False, False, True, False, False, True]
