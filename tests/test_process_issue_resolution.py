"""The shipped issue resolution process: triage, ITIL priority, skill assignment, SLA, reopen."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine import timers
from engine.errors import Conflict, FormValidationError

PROCESSES = Path(__file__).resolve().parent.parent / "processes"
REPORT = {
    "title": "Login fails",
    "description": "The login page answers 500 since this morning.",
    "affected_area": "portal/login",
    "reporter_email": "casey@client.example",
}
RESOLUTION = {"resolution": "Rotated the expired certificate.", "root_cause": "Certificate expired."}


@pytest.fixture
def issues(team):
    team.add_user("eve", groups_=["engineer"], skills={"support": 3})
    team.deploy([PROCESSES / "issue_resolution.bpmn"])
    return team


def open_tasks(engine, instance_id: int) -> dict:
    return {t["element_id"]: t for t in engine.get_instance(instance_id)["tasks"]}


def triaged(engine, impact="high", urgency="high", **data) -> int:
    """Start an instance, report and triage it; returns the instance id (resolve task open)."""
    instance = engine.start("issue_resolution", data or None, actor="casey")
    report = open_tasks(engine, instance["id"])["report_issue"]
    assert report["candidate_group"] == "client"
    engine.complete(report["id"], "casey", REPORT)
    triage = open_tasks(engine, instance["id"])["triage"]
    assert triage["candidate_group"] == "project_manager"
    engine.complete(triage["id"], "pat", {"impact": impact, "urgency": urgency, "required_skills": "support"})
    return instance["id"]


def resolve_and_verify(engine, instance_id: int, fixed: str) -> dict:
    resolve = open_tasks(engine, instance_id)["resolve_issue"]
    engine.complete(resolve["id"], "eve", RESOLUTION)
    verify = open_tasks(engine, instance_id)["verify_fix"]
    assert verify["candidate_group"] == "client"
    data = {"fixed": fixed} if fixed == "yes" else {"fixed": fixed, "verify_comment": "Still failing for admins."}
    return engine.complete(verify["id"], "casey", data)


@pytest.mark.parametrize(
    ("impact", "urgency", "priority", "sla"),
    [
        ("high", "high", "P1", "PT4H"),
        ("medium", "high", "P2", "PT8H"),
        ("low", "high", "P3", "PT24H"),
        ("low", "low", "P4", "PT72H"),
    ],
)
def test_priority_from_impact_and_urgency(issues, impact, urgency, priority, sla):
    instance_id = triaged(issues, impact, urgency)
    data = issues.get_instance(instance_id)["data"]
    assert data["priority"] == priority
    assert data["sla"] == sla
    assert data["reopen_count"] == 0 and "sla_breached" not in data


def test_happy_path_assigns_the_skilled_engineer_and_closes(issues):
    instance_id = triaged(issues)
    resolve = open_tasks(issues, instance_id)["resolve_issue"]
    assert resolve["candidate_group"] == "engineer"
    assert resolve["assignee"] == "eve"  # eli lacks the support skill
    with pytest.raises(Conflict):
        issues.complete(resolve["id"], "eli", RESOLUTION)
    resolve_and_verify(issues, instance_id, "yes")
    prevention = open_tasks(issues, instance_id)["record_prevention"]
    assert prevention["candidate_group"] == "engineer"
    after = issues.complete(prevention["id"], "eve", {"prevention": "Monitor certificate expiry."})
    assert after["status"] == "completed"
    data = after["data"]
    assert data["priority"] == "P1" and data["fixed"] == "yes" and data["reopen_count"] == 0
    assert "sla_breached" not in data and data["prevention"] == "Monitor certificate expiry."
    history = issues.history(instance_id)
    created = [e["element_id"] for e in history if e["type"] == "task_created"]
    assert created == ["report_issue", "triage", "resolve_issue", "verify_fix", "record_prevention"]
    assigned = [e for e in history if e["type"] == "task_assigned"]
    assert [(e["element_id"], e["data"]["assignee"]) for e in assigned] == [("resolve_issue", "eve")]
    assert "gateway_decision" in [e["type"] for e in history]


def test_form_rejects_an_unknown_impact(issues):
    instance = issues.start("issue_resolution", actor="casey")
    report = open_tasks(issues, instance["id"])["report_issue"]
    issues.complete(report["id"], "casey", REPORT)
    triage = open_tasks(issues, instance["id"])["triage"]
    with pytest.raises(FormValidationError) as info:
        issues.complete(triage["id"], "pat", {"impact": "huge", "urgency": "high"})
    assert [e["field"] for e in info.value.errors] == ["impact"]


def test_reopen_loop_three_times_then_fixed(issues):
    instance_id = triaged(issues, "medium", "medium")
    for round_ in range(1, 4):
        after = resolve_and_verify(issues, instance_id, "no")
        assert after["data"]["reopen_count"] == round_
        assert list(open_tasks(issues, instance_id)) == ["resolve_issue"]
    resolve_and_verify(issues, instance_id, "yes")
    prevention = open_tasks(issues, instance_id)["record_prevention"]
    after = issues.complete(prevention["id"], "eve", {"prevention": "Add a regression test."})
    assert after["status"] == "completed" and after["data"]["reopen_count"] == 3
    history = issues.history(instance_id)
    created = [e["element_id"] for e in history if e["type"] == "task_created"]
    assert created.count("resolve_issue") == 4 and created.count("verify_fix") == 4
    decisions = [e for e in history if e["type"] == "gateway_decision" and e["element_id"] == "gw_fixed"]
    assert len(decisions) == 4


def test_sla_breach_escalates_without_stopping_the_work(issues):
    instance_id = triaged(issues, sla_override="PT0.2S")
    assert issues.get_instance(instance_id)["data"]["sla"] == "PT0.2S"
    resolve = open_tasks(issues, instance_id)["resolve_issue"]
    time.sleep(0.3)
    assert timers.fire_due(issues) == 1
    tasks = open_tasks(issues, instance_id)
    assert set(tasks) == {"resolve_issue", "handle_breach"}
    assert tasks["resolve_issue"]["id"] == resolve["id"]  # non-interrupting: the same task stays open
    assert tasks["handle_breach"]["candidate_group"] == "delivery_manager"
    assert issues.get_instance(instance_id)["data"]["sla_breached"] is True
    # the manager handles the breach, the engineer still resolves and the issue closes
    issues.complete(tasks["handle_breach"]["id"], "dana", {"breach_action": "Called the client, added eli."})
    resolve_and_verify(issues, instance_id, "yes")
    prevention = open_tasks(issues, instance_id)["record_prevention"]
    after = issues.complete(prevention["id"], "eve", {"prevention": "Alert before the SLA runs out."})
    assert after["status"] == "completed" and after["data"]["sla_breached"] is True
    history = issues.history(instance_id)
    assert [e["element_id"] for e in history if e["type"] == "task_created"].count("handle_breach") == 1
    completed = [e["element_id"] for e in history if e["type"] in ("activity_completed", "task_completed")]
    assert "record_breach" in completed and "handle_breach" in completed
