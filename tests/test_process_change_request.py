"""The shipped change request process: message start, risk assessment, approval route, sign-off.

``change_request`` starts on message ``change_submitted``; the project manager assesses the
impact, the called ``risk_assessment`` scores the risk, and the route decides who approves:
the project manager alone (small/medium change, low/medium risk) or the project manager and
the sponsor in parallel. The client signs off when the cost goes up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import FormValidationError

PROCESSES = Path(__file__).resolve().parent.parent / "processes"
PAYLOAD = {"title": "Add a FAQ page", "requested_by": "casey"}
# (probability, impact) -> band of the built-in score_risk matrix
LOW, MEDIUM, HIGH, CRITICAL = (1, 1), (2, 3), (3, 4), (5, 5)


@pytest.fixture
def changes(team):
    team.add_user("sam", groups_=["sponsor"])
    team.deploy([PROCESSES / "risk_assessment.bpmn", PROCESSES / "change_request.bpmn"])
    return team


def open_tasks(instance: dict) -> dict:
    return {t["element_id"]: t for t in instance["tasks"]}


def assessed(engine, size="small", risk=LOW, cost_change=0) -> dict:
    """Submit a change, assess its impact and its risk; returns the instance (approvals open)."""
    [instance] = engine.correlate_message("change_submitted", PAYLOAD, actor="casey")
    assess = open_tasks(instance)["assess_impact"]
    impact = {"scope": "One more page", "timeline_days": 2, "cost_change": cost_change, "size": size}
    instance = engine.complete(assess["id"], "pat", impact)
    identify = open_tasks(instance)["identify_risks"]
    assert identify["candidate_group"] == "project_manager"
    probability, impact_level = risk
    return engine.complete(
        identify["id"], "pat", {"probability": probability, "impact": impact_level, "risk_description": "Scope creep"}
    )


def approve(engine, instance: dict, element_id: str, actor: str, data: dict) -> dict:
    return engine.complete(open_tasks(instance)[element_id]["id"], actor, data)


def test_message_start_creates_the_instance_with_the_payload(changes):
    [instance] = changes.correlate_message("change_submitted", PAYLOAD, actor="casey")
    assert instance["process_id"] == "change_request"
    assert instance["data"] == PAYLOAD
    assess = open_tasks(instance)["assess_impact"]
    assert assess["candidate_group"] == "project_manager"
    assert assess["title"] == "Assess impact"


def test_assessment_form_is_checked(changes):
    [instance] = changes.correlate_message("change_submitted", PAYLOAD, actor="casey")
    assess = open_tasks(instance)["assess_impact"]
    with pytest.raises(FormValidationError):
        changes.complete(assess["id"], "pat", {"scope": "x" * 5, "timeline_days": 1, "cost_change": 0, "size": "huge"})


def test_risk_is_scored_by_the_called_process(changes):
    instance = assessed(changes, risk=HIGH)
    assert instance["data"]["risk"] == {"score": 12, "band": "high"}
    assert instance["data"]["risk_band"] == "high"


def test_small_low_risk_change_needs_only_the_project_manager(changes):
    instance = assessed(changes, "small", LOW, cost_change=0)
    assert instance["data"]["route"] == "pm_only" and instance["data"]["client_signoff"] is False
    assert list(open_tasks(instance)) == ["pm_approval"]
    assert open_tasks(instance)["pm_approval"]["candidate_group"] == "project_manager"
    done = approve(changes, instance, "pm_approval", "pat", {"approved": True})
    assert done["status"] == "completed"
    assert done["data"]["project_updated"] is True
    assert "rejection_reason" not in done["data"]


def test_large_change_opens_pm_and_sponsor_approval_at_once(changes):
    instance = assessed(changes, "large", LOW, cost_change=0)
    assert instance["data"]["route"] == "pm_and_sponsor"
    tasks = open_tasks(instance)
    assert sorted(tasks) == ["pm_approval_joint", "sponsor_approval"]
    assert tasks["pm_approval_joint"]["candidate_group"] == "project_manager"
    assert tasks["sponsor_approval"]["candidate_group"] == "sponsor"
    instance = approve(changes, instance, "sponsor_approval", "sam", {"sponsor_approved": True})
    assert list(open_tasks(instance)) == ["pm_approval_joint"]  # the join waits for the PM
    done = approve(changes, instance, "pm_approval_joint", "pat", {"approved": True})
    assert done["status"] == "completed"
    assert done["data"]["project_updated"] is True


@pytest.mark.parametrize(
    ("size", "risk", "route"),
    [
        ("small", LOW, "pm_only"),
        ("medium", MEDIUM, "pm_only"),
        ("small", HIGH, "pm_and_sponsor"),  # boundary: a small change with high risk
        ("medium", CRITICAL, "pm_and_sponsor"),
        ("large", LOW, "pm_and_sponsor"),
    ],
)
def test_route_from_size_and_risk_band(changes, size, risk, route):
    instance = assessed(changes, size, risk)
    assert instance["data"]["route"] == route
    expected = ["pm_approval"] if route == "pm_only" else ["pm_approval_joint", "sponsor_approval"]
    assert sorted(open_tasks(instance)) == expected


@pytest.mark.parametrize(("cost_change", "signoff"), [(0, False), (-5, False), (1, True), (0.5, True)])
def test_client_signs_off_only_when_the_cost_goes_up(changes, cost_change, signoff):
    instance = assessed(changes, "small", LOW, cost_change=cost_change)
    assert instance["data"]["client_signoff"] is signoff
    after_pm = approve(changes, instance, "pm_approval", "pat", {"approved": True})
    if not signoff:
        assert after_pm["status"] == "completed"
        return
    client = open_tasks(after_pm)["client_signoff_task"]
    assert client["candidate_group"] == "client"
    done = changes.complete(client["id"], "casey", {"client_approved": True})
    assert done["status"] == "completed" and done["data"]["project_updated"] is True


def test_pm_rejection_records_the_reason(changes):
    instance = assessed(changes)
    with pytest.raises(FormValidationError):  # a rejection needs a reason
        approve(changes, instance, "pm_approval", "pat", {"approved": False})
    done = approve(changes, instance, "pm_approval", "pat", {"approved": False, "reason": "Out of budget"})
    assert done["status"] == "completed"
    assert done["data"]["rejection_reason"] == "Out of budget"
    assert done["data"]["rejected_by"] == "project_manager"
    assert "project_updated" not in done["data"]


def test_sponsor_rejection_rejects_although_the_pm_approved(changes):
    instance = assessed(changes, "large", LOW)
    instance = approve(changes, instance, "pm_approval_joint", "pat", {"approved": True})
    done = approve(
        changes, instance, "sponsor_approval", "sam", {"sponsor_approved": False, "sponsor_reason": "Not this year"}
    )
    assert done["status"] == "completed"
    assert done["data"]["rejection_reason"] == "Not this year"
    assert done["data"]["rejected_by"] == "sponsor"
    assert "project_updated" not in done["data"]


def test_client_rejection_rejects_the_change(changes):
    instance = assessed(changes, "small", LOW, cost_change=100)
    instance = approve(changes, instance, "pm_approval", "pat", {"approved": True})
    done = approve(
        changes, instance, "client_signoff_task", "casey", {"client_approved": False, "client_reason": "Too expensive"}
    )
    assert done["data"]["rejection_reason"] == "Too expensive"
    assert done["data"]["rejected_by"] == "client"
    assert "project_updated" not in done["data"]
