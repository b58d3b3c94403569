"""Errors become incidents naming task, line and message; retry after a fix; no silent stalls."""

from __future__ import annotations

import pytest

from engine.errors import DefinitionInvalid, InvalidState
from tests import processes
from tests.conftest import make_engine, only_task


def deploy_script(engine, tmp_path, script: str, pid: str = "scripted"):
    engine.deploy([processes.write(tmp_path, f"{pid}.bpmn", processes.script_then_task(pid, script))])
    instance = engine.start(pid, {})
    return engine.complete(only_task(instance)["id"], "pat", {"divisor": 0})


def test_failing_script_raises_an_incident_with_task_line_and_message(team, tmp_path):
    instance = deploy_script(team, tmp_path, "a = 1\nb = 2\nc = a / divisor\n")
    assert instance["status"] == "error"
    assert instance["tasks"] == []
    [incident] = instance["incidents"]
    assert incident["element_id"] == "work"
    assert incident["line"] == 3
    assert "ZeroDivisionError" in incident["message"] and "division by zero" in incident["message"]
    assert team.list_incidents()[0]["id"] == incident["id"]
    # the completion that triggered it was kept: the decision is not lost
    assert team.history(instance["id"])[-2]["type"] in ("task_completed", "incident_raised")


def test_an_error_raised_from_none_keeps_the_message_its_author_chose(team, tmp_path):
    script = (
        "try:\n"
        "    amount = 100 / divisor\n"
        "except ZeroDivisionError:\n"
        "    raise ValueError('the divisor must not be zero') from None\n"
    )
    [incident] = deploy_script(team, tmp_path, script)["incidents"]
    assert incident["message"] == "ValueError: the divisor must not be zero"
    assert incident["line"] == 4


def test_retry_with_corrected_data_continues_the_instance(team, tmp_path):
    instance = deploy_script(team, tmp_path, "c = 10 / divisor\n")
    incident = instance["incidents"][0]
    after = team.retry_incident(incident["id"], "dana", {"divisor": 5})
    assert after["status"] == "running"
    assert after["data"]["c"] == 2
    assert only_task(after)["element_id"] == "check"
    assert team.list_incidents() == []
    assert team.list_incidents(status="resolved")[0]["id"] == incident["id"]
    with pytest.raises(InvalidState):
        team.retry_incident(incident["id"])


def test_retry_that_fails_again_raises_a_new_incident(team, tmp_path):
    instance = deploy_script(team, tmp_path, "c = 10 / divisor\n")
    first = instance["incidents"][0]
    after = team.retry_incident(first["id"], "dana")
    assert after["status"] == "error"
    assert [i["id"] for i in after["incidents"]] != [first["id"]]


def test_name_error_says_which_name(team, tmp_path):
    instance = deploy_script(team, tmp_path, "total = amount * 2\n")
    message = instance["incidents"][0]["message"]
    assert "amount" in message


def test_gateway_without_matching_condition_is_an_incident(team, tmp_path):
    team.deploy([processes.write(tmp_path, "route.bpmn", processes.gateway_without_default("route"))])
    instance = team.start("route", {"size": 50})
    assert instance["status"] == "error"
    incident = instance["incidents"][0]
    assert incident["element_id"] == "gw_size"
    assert "No conditions satisfied" in incident["message"]
    fixed = team.retry_incident(incident["id"], "dana", {"size": 5})
    assert only_task(fixed)["element_id"] == "small"


def test_endless_automatic_loop_is_stopped_by_the_step_limit(database_url, tmp_path):
    engine = make_engine(database_url, engine_step_limit=300)
    try:
        engine.deploy([processes.write(tmp_path, "spin.bpmn", processes.script_loop("spin"))])
        instance = engine.start("spin", {"n": 0, "limit": 10**9})
        assert instance["status"] == "error"
        incident = instance["incidents"][0]
        assert incident["kind"] == "step_limit"
        assert "300 engine steps" in incident["message"]
    finally:
        engine.close()


def test_long_automatic_loop_within_the_limit_completes(sqlite_engine, tmp_path):
    """1,500 passes of a script loop in one advance: no depth stall, no recursion error."""
    sqlite_engine.deploy([processes.write(tmp_path, "count.bpmn", processes.script_loop("count"))])
    instance = sqlite_engine.start("count", {"n": 0, "limit": 1500})
    assert instance["status"] == "completed"
    assert instance["data"]["n"] == 1500


RUNTIME_HOSTILE = [
    "open(target, 'w').write('x')",
    "getattr(divisor, '__cl' + 'ass__')",
    "'{0.__class__.__init__.__globals__}'.format(divisor)",
    "x = 'a' * 10**10",
    "x = 10 ** 10 ** 8",
]


@pytest.mark.parametrize("script", RUNTIME_HOSTILE)
def test_hostile_script_ends_in_an_incident_without_side_effects(team, tmp_path, script):
    target = tmp_path / "pwned"
    instance = deploy_script(team, tmp_path, f"target = {str(target)!r}\n" + script)
    assert instance["status"] == "error", script
    assert instance["incidents"][0]["element_id"] == "work"
    assert not target.exists()


DEPLOY_REFUSED = [
    "import os\nos.system('touch /tmp/x')",
    "__import__('os').system('touch /tmp/x')",
    "().__class__.__bases__[0].__subclasses__()",
]


@pytest.mark.parametrize("script", DEPLOY_REFUSED)
def test_scripts_that_cannot_be_sandboxed_are_refused_at_deploy(sqlite_engine, tmp_path, script):
    path = processes.write(tmp_path, "bad.bpmn", processes.script_then_task("bad", script))
    with pytest.raises(DefinitionInvalid) as info:
        sqlite_engine.deploy([path])
    assert "bad.bpmn:" in str(info.value) and ": work: " in str(info.value)
    assert sqlite_engine.list_definitions() == []


def test_endless_script_is_stopped_by_the_time_limit(database_url, tmp_path):
    engine = make_engine(database_url, script_time_limit=0.3)
    try:
        engine.add_user("pat", groups_=["project_manager"])
        instance = deploy_script(engine, tmp_path, "n = 0\nwhile True:\n    n = n + 1\n")
        assert instance["status"] == "error"
        assert "time limit" in instance["incidents"][0]["message"]
        # the engine (and its database) keeps serving other work afterwards
        assert engine.start("scripted", {})["status"] == "running"
    finally:
        engine.close()


def _scripted_user_task(pid: str, prescript: str = "", postscript: str = "") -> str:
    """start -> user task 'estimate' (project_manager) with pre/post scripts -> user task 'check' -> end."""
    ext = ""
    if prescript:
        ext += f"<spiffworkflow:preScript>{prescript}</spiffworkflow:preScript>"
    if postscript:
        ext += f"<spiffworkflow:postScript>{postscript}</spiffworkflow:postScript>"
    return f'''<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="defs_{pid}" targetNamespace="x">
  <bpmn:process id="{pid}" isExecutable="true">
    <bpmn:laneSet id="lanes"><bpmn:lane id="lane" name="project_manager">
      <bpmn:flowNodeRef>estimate</bpmn:flowNodeRef><bpmn:flowNodeRef>check</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="estimate" name="Estimate"><bpmn:extensionElements>{ext}</bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="check" name="Check">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="estimate" />
    <bpmn:sequenceFlow id="f2" sourceRef="estimate" targetRef="check" />
    <bpmn:sequenceFlow id="f3" sourceRef="check" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>'''


def test_retry_after_a_failed_post_script_keeps_the_submission(team, tmp_path):
    path = processes.write(tmp_path, "post.bpmn", _scripted_user_task("post", postscript="cost = hours * rate"))
    team.deploy([path])
    task = only_task(team.start("post", {}))
    instance = team.complete(task["id"], "pat", {"hours": 3})
    assert instance["status"] == "error"
    assert team.get_task(task["id"])["status"] == "completed"  # the person's input is kept
    after = team.retry_incident(instance["incidents"][0]["id"], "dana", {"rate": 100})
    assert after["data"]["cost"] == 300
    assert only_task(after)["element_id"] == "check"


def test_retry_after_a_failed_pre_script_runs_it_again(team, tmp_path):
    script = "label = 'Estimate for ' + customer"
    team.deploy([processes.write(tmp_path, "pre.bpmn", _scripted_user_task("pre", prescript=script))])
    instance = team.start("pre", {})
    assert instance["status"] == "error" and instance["tasks"] == []
    after = team.retry_incident(instance["incidents"][0]["id"], "dana", {"customer": "ACME"})
    assert after["status"] == "running"
    assert only_task(after)["element_id"] == "estimate"
    assert after["data"]["label"] == "Estimate for ACME"
