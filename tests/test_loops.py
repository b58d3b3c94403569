"""Long-running repetition: rework loops taken 1,000 times complete, and history does not grow.

SpiffWorkflow alone stalls a gateway loop after ~333 passes (its task iterator stops at
depth 1000). The engine prunes finished history (engine/compaction.py), so the loop keeps
working and the stored state stays the same size.
"""

from __future__ import annotations

import sqlalchemy as sa
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from engine.compaction import MIN_TASKS, prune_history
from engine.schema import instances
from tests.conftest import BPMN, only_task

LOOP = "engine/bench/rework_loop.bpmn"


def state_size(engine, instance_id: int) -> int:
    with engine.db.read() as conn:
        return len(conn.execute(sa.select(instances.c.state).where(instances.c.id == instance_id)).scalar())


def test_rework_loop_taken_1000_times_completes(team):
    team.deploy([LOOP])
    instance = team.start("bench_rework_loop", {})
    sizes = {}
    for passes in range(1, 1001):
        instance = team.complete(only_task(instance)["id"], "quinn", {"rework": passes < 1000})
        if passes in (10, 500, 999):
            sizes[passes] = state_size(team, instance["id"])
    assert instance["status"] == "completed"
    assert sizes[999] <= sizes[10] * 1.2, sizes  # state does not grow with history
    events = [e for e in team.history(instance["id"]) if e["type"] == "task_completed"]
    assert len(events) == 1000  # the audit log keeps every pass


def test_parallel_join_inside_a_loop_waits_for_both_branches_every_pass(sqlite_engine):
    from tests.conftest import add_team

    add_team(sqlite_engine)
    sqlite_engine.deploy([BPMN / "parallel_loop.bpmn"])
    instance = sqlite_engine.start("parallel_loop", {"repeat": True})
    for passes in range(1, 401):
        tasks = {t["element_id"]: t["id"] for t in instance["tasks"]}
        assert set(tasks) == {"qa", "client_check"}, (passes, tasks)
        instance = sqlite_engine.complete(tasks["qa"], "quinn", {})
        assert [t["element_id"] for t in instance["tasks"]] == ["client_check"], passes  # join still waits
        instance = sqlite_engine.complete(tasks["client_check"], "casey", {"repeat": passes < 400})
    assert instance["status"] == "completed"


def test_pruning_keeps_the_tree_small_and_the_result_identical():
    """Same loop, raw SpiffWorkflow with and without pruning: same end data, bounded tree."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(LOOP)
    spec = parser.get_spec("bench_rework_loop")

    def run(passes: int, prune: bool):
        wf = BpmnWorkflow(spec)
        wf.do_engine_steps()
        biggest = 0
        for n in range(passes):
            task = wf.get_next_task(state=TaskState.READY, manual=True)
            task.data.update(rework=n < passes - 1, n=n)
            task.run()
            wf.do_engine_steps()
            if prune:
                prune_history(wf)
            biggest = max(biggest, len(wf.tasks))
        return wf, biggest

    plain, plain_size = run(200, prune=False)
    pruned, pruned_size = run(200, prune=True)
    assert plain.is_completed() and pruned.is_completed()
    assert plain.data == pruned.data
    assert pruned_size <= MIN_TASKS + 5 < plain_size


def test_raw_spiffworkflow_stalls_where_the_engine_does_not():
    """Documents the library behaviour we guard against (if this starts failing, re-check the workaround)."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(LOOP)
    wf = BpmnWorkflow(parser.get_spec("bench_rework_loop"))
    wf.do_engine_steps()
    stalled_at = None
    for n in range(400):
        task = wf.get_next_task(state=TaskState.READY, manual=True)
        if task is None:
            stalled_at = n
            break
        task.data["rework"] = True
        task.run()
        wf.do_engine_steps()
    assert stalled_at is not None and 300 < stalled_at < 400
