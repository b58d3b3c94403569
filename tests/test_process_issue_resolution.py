"""The shipped issue resolution process: two ways in, triage, ITIL priority, skill assignment, SLA, reopen.

``issue_resolution`` starts by hand (the client fills "Report issue") or on the message
``issue_reported`` whose payload is the report (checked, then copied into the process data; the
report form is skipped). Triage sets impact and urgency; the ``score_priority`` hook turns them
into the ITIL priority P1-P4 and its target hours.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import timers
from engine.errors import Conflict, FormValidationError, NotFound
from tests.conftest import OffsetClock, only_task, subscription_count

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


def reported(engine, **data) -> int:
    """Start an instance by hand and fill the report form; returns the instance id (triage open)."""
    instance = engine.start("issue_resolution", data or None, actor="casey")
    report = open_tasks(engine, instance["id"])["report_issue"]
    assert report["candidate_group"] == "client"
    engine.complete(report["id"], "casey", REPORT)
    return instance["id"]


def reported_by_message(engine, payload=REPORT) -> dict:
    [instance] = engine.correlate_message("issue_reported", payload, actor="casey")
    return instance


def triaged(engine, impact="high", urgency="high", instance_id=None, **data) -> int:
    """Report (by hand unless ``instance_id`` is given) and triage; returns the instance id (resolve task open)."""
    instance_id = instance_id or reported(engine, **data)
    triage = open_tasks(engine, instance_id)["triage"]
    assert triage["candidate_group"] == "project_manager"
    engine.complete(triage["id"], "pat", {"impact": impact, "urgency": urgency, "required_skills": "support"})
    return instance_id


def resolve_and_verify(engine, instance_id: int, fixed: str) -> dict:
    resolve = open_tasks(engine, instance_id)["resolve_issue"]
    engine.complete(resolve["id"], "eve", RESOLUTION)
    verify = open_tasks(engine, instance_id)["verify_fix"]
    assert verify["candidate_group"] == "client"
    data = {"fixed": fixed} if fixed == "yes" else {"fixed": fixed, "verify_comment": "Still failing for admins."}
    return engine.complete(verify["id"], "casey", data)


# the whole ITIL matrix: every step of impact or urgency crosses a priority boundary
@pytest.mark.parametrize(
    ("impact", "urgency", "priority", "sla"),
    [
        ("high", "high", "P1", "PT4H"),
        ("high", "medium", "P2", "PT8H"),
        ("medium", "high", "P2", "PT8H"),
        ("high", "low", "P3", "PT24H"),
        ("medium", "medium", "P3", "PT24H"),
        ("low", "high", "P3", "PT24H"),
        ("medium", "low", "P4", "PT72H"),
        ("low", "medium", "P4", "PT72H"),
        ("low", "low", "P4", "PT72H"),
    ],
)
def test_priority_from_impact_and_urgency(issues, impact, urgency, priority, sla):
    instance_id = triaged(issues, impact, urgency)
    data = issues.get_instance(instance_id)["data"]
    assert data["priority"] == priority
    assert data["target_hours"] == int(sla[2:-1])
    assert data["sla"] == sla
    assert data["reopen_count"] == 0 and "sla_breached" not in data


def test_priority_targets_come_from_the_setting(issues, monkeypatch):
    monkeypatch.setenv("SDF_PRIORITY_TARGET_HOURS", "P1:2,P2:6,P3:12,P4:48")
    data = issues.get_instance(triaged(issues, "medium", "high"))["data"]
    assert (data["priority"], data["target_hours"], data["sla"]) == ("P2", 6, "PT6H")


# -- two ways in -----------------------------------------------------------------------------------
def test_a_message_starts_the_issue_with_the_report_and_skips_the_form(issues):
    payload = dict(REPORT, source="monitoring", external_id="ALERT-7")
    instance = reported_by_message(issues, payload)
    assert instance["process_id"] == "issue_resolution" and instance["started_by"] == "casey"
    triage = only_task(instance)
    assert (triage["element_id"], triage["candidate_group"]) == ("triage", "project_manager")
    data = instance["data"]
    assert {k: data[k] for k in REPORT} == REPORT
    assert data["report"] == payload  # the message as received, extra keys included
    history = issues.history(instance["id"])
    assert [e["type"] for e in history][:2] == ["instance_started", "message_correlated"]
    assert "report_issue" not in [e["element_id"] for e in history]
    assert "check_report" in [e["element_id"] for e in history if e["type"] == "activity_completed"]
    assert subscription_count(issues) == 0


def test_every_message_reports_a_new_issue(issues):
    first = reported_by_message(issues)
    second = reported_by_message(issues, dict(REPORT, title="Export is empty"))
    assert first["id"] != second["id"]
    assert [t["element_id"] for t in issues.list_tasks(candidate_group="project_manager")] == ["triage", "triage"]


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"title": "  "}, {"title"}),
        ({"affected_area": 42}, {"affected_area"}),
        ({"description": "x" * 5001}, {"description"}),
        ({"reporter_email": "casey at client"}, {"reporter_email"}),
        ({"title": None, "reporter_email": "@client.example"}, {"title", "reporter_email"}),
    ],
)
def test_a_bad_report_is_refused_field_by_field_and_creates_nothing(issues, change, fields):
    """The message start event carries the report form: a payload that does not match it is
    refused before any instance exists, naming every bad field."""
    with pytest.raises(FormValidationError) as info:
        issues.correlate_message("issue_reported", dict(REPORT, **change), actor="casey")
    assert info.value.message.startswith("message 'issue_reported': submitted data does not match form")
    assert {e["field"] for e in info.value.errors} == fields
    assert issues.list_instances(process_id="issue_resolution") == []
    assert reported_by_message(issues)["status"] == "running"  # a good report still starts one


def test_a_report_missing_a_required_field_is_refused(issues):
    partial = {k: v for k, v in REPORT.items() if k != "reporter_email"}
    with pytest.raises(FormValidationError) as info:
        issues.correlate_message("issue_reported", partial, actor="casey")
    assert "'reporter_email' is a required property" in info.value.message
    assert issues.list_instances(process_id="issue_resolution") == []


def test_an_unknown_message_name_is_a_clear_error(issues):
    with pytest.raises(NotFound) as info:
        issues.correlate_message("issue_report", REPORT)
    assert "no instance waits for message 'issue_report'" in info.value.message
    assert issues.list_instances(process_id="issue_resolution") == []


def test_by_hand_the_client_fills_the_report_form_and_no_message_is_awaited(issues):
    instance = issues.start("issue_resolution", actor="casey")
    report = only_task(instance)
    assert (report["element_id"], report["title"], report["candidate_group"]) == (
        "report_issue",
        "Report issue",
        "client",
    )
    with pytest.raises(FormValidationError) as info:
        issues.complete(report["id"], "casey", dict(REPORT, reporter_email="casey"))
    assert {e["field"] for e in info.value.errors} == {"reporter_email"}
    assert subscription_count(issues) == 0
    assert reported_by_message(issues)["id"] != instance["id"]  # a message starts a new issue


def test_a_reported_issue_goes_round_the_reopen_loop_and_closes(issues):
    instance_id = triaged(issues, "low", "high", instance_id=reported_by_message(issues)["id"])
    assert issues.get_instance(instance_id)["data"]["priority"] == "P3"
    for round_ in (1, 2):
        after = resolve_and_verify(issues, instance_id, "no")
        assert after["data"]["reopen_count"] == round_
        resolve = only_task(after)
        assert (resolve["element_id"], resolve["assignee"]) == ("resolve_issue", "eve")
    resolve_and_verify(issues, instance_id, "yes")
    prevention = open_tasks(issues, instance_id)["record_prevention"]
    done = issues.complete(prevention["id"], "eve", {"prevention": "Alert on certificate expiry."})
    assert done["status"] == "completed" and done["data"]["reopen_count"] == 2
    history = issues.history(instance_id)
    created = [(e["element_id"], e["data"]["candidate_group"]) for e in history if e["type"] == "task_created"]
    assert created == [
        ("triage", "project_manager"),
        *[("resolve_issue", "engineer"), ("verify_fix", "client")] * 3,
        ("record_prevention", "engineer"),
    ]


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


def test_an_assigned_task_reads_the_same_in_the_answer_as_in_the_inbox(issues):
    """The instance returned by the completion that opened an auto-assigned task describes it as
    the inbox row does: claimed by the chosen engineer, since that moment."""
    instance_id = reported(issues)
    triage = open_tasks(issues, instance_id)["triage"]
    after = issues.complete(triage["id"], "pat", {"impact": "high", "urgency": "high", "required_skills": "support"})
    answered = {t["element_id"]: t for t in after["tasks"]}["resolve_issue"]
    stored = issues.get_task(answered["id"])
    assert (answered["assignee"], answered["status"]) == ("eve", "claimed")
    assert answered["claimed_at"] is not None and answered["claimed_at"] == stored["claimed_at"]
    assert {k: answered[k] for k in stored} == stored


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
    clock = issues.clock = OffsetClock()
    instance_id = triaged(issues)  # high impact, high urgency: P1, resolved within 4 hours
    assert issues.get_instance(instance_id)["data"]["sla"] == "PT4H"
    resolve = open_tasks(issues, instance_id)["resolve_issue"]
    clock.advance(hours=3, minutes=59)
    assert timers.fire_due(issues) == 0  # not breached yet
    clock.advance(minutes=1, seconds=1)
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
