"""The shipped project setup process: scope, timeline, team, risk, sponsor, plan, kickoff.

``project_setup`` is started by hand. The project manager defines the scope and the timeline,
the delivery manager allocates the team, and the engineering and QA leads (chosen by the
assignment hook from skills and workload) confirm the approach. The called
``risk_assessment`` scores the risk and the decision table ``project_risk_route`` sends high
or critical risks and budgets of 250,000 or more to the sponsor (approve, rework, cancel).
The project manager plans the communication, the client approves the kickoff or asks for
changes, a late approval reminds the client and escalates to the delivery manager, and the
kickoff e-mail goes to the team and to the client (a real SMTP server on loopback).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from engine import jobs, timers
from engine.errors import Forbidden, FormValidationError
from tests.conftest import OffsetClock, only_task, open_tasks, read_mail

PROCESSES = Path(__file__).resolve().parent.parent / "processes"
DEPLOY = [PROCESSES / "risk_assessment.bpmn", PROCESSES / "project_setup.bpmn", PROCESSES / "project_risk_route.dmn"]
CLIENT_EMAIL = "casey@acme.example"
TEAM_EMAIL = "apollo-team@sdf.example"
SCOPE = {
    "project_name": "Apollo portal",
    "client": "ACME",
    "client_email": CLIENT_EMAIL,
    "deliverables": ["Customer portal", "Single sign-on"],
    "success_criteria": ["90% of orders placed online"],
    "client_goals": ["Fewer support calls"],
    "budget": 120000,
}
TIMELINE = {
    "start_date": "2030-01-07",
    "end_date": "2030-06-28",
    "milestones": [{"name": "Beta release", "date": "2030-03-29"}, {"name": "Go-live", "date": "2030-06-28"}],
}
RESOURCES = {
    "team": [
        {"role": "engineer", "skills": ["architecture"], "allocation_percent": 100},
        {"role": "qa_reviewer", "skills": ["test_planning"], "allocation_percent": 50},
    ],
    "team_email": TEAM_EMAIL,
}
ENGINEERING = {
    "technical_approach": "Django portal on the client's cloud",
    "effort_days": 120,
    "capacity_confirmed": True,
}
QA = {"qa_approach": "Peer review plus acceptance tests", "quality_gates": ["Code review", "Client acceptance"]}
COMMUNICATION = {
    "channels": ["email", "video_call"],
    "reporting_cadence": "weekly",
    "status_meeting": "Mondays 10:00 CET",
    "escalation_contact": "pat@sdf.example",
}
APPROVED = {"kickoff_approved": True, "kickoff_date": "2030-01-07"}
# (probability, impact) for the built-in score_risk bands, at their edges (scores 4, 5, 9, 10, 16, 20)
LOW, MEDIUM_LOW, MEDIUM, HIGH, HIGH_TOP, CRITICAL = (2, 2), (1, 5), (3, 3), (2, 5), (4, 4), (4, 5)
MEMBER = {"project_manager": "pat", "delivery_manager": "dana", "client": "casey", "sponsor": "sam"}
CREATED_UNTIL_RISK = [
    "define_scope",
    "plan_timeline",
    "allocate_resources",
    "confirm_engineering",
    "plan_qa",
    "identify_risks",
]


# -- helpers and fixtures --------------------------------------------------------------------------
@pytest.fixture
def projects(team):
    team.add_user("sam", groups_=["sponsor"])
    team.add_user("ada", groups_=["engineer"], skills={"architecture": 4})
    team.add_user("ben", groups_=["engineer"], skills={"architecture": 2, "support": 5})
    team.add_user("quentin", groups_=["qa_reviewer"], skills={"test_planning": 3})
    team.deploy(DEPLOY)
    return team


def complete(engine, instance: dict, element_id: str, data: dict, actor: str | None = None) -> dict:
    """Complete the open task ``element_id`` as its assignee (or a member of its group)."""
    task = open_tasks(instance)[element_id]
    actor = actor or task["assignee"] or MEMBER[task["candidate_group"]]
    return engine.complete(task["id"], actor, data)


def start(engine, **data) -> dict:
    instance = engine.start("project_setup", {"project_name": "Apollo portal", **data}, actor="dana")
    assert list(open_tasks(instance)) == ["define_scope"]
    return instance


def plan_until_risk(engine, instance: dict, risk=LOW, budget=120000) -> dict:
    """Scope, timeline, team and risk of one round; returns the instance after the decision table."""
    instance = complete(engine, instance, "define_scope", dict(SCOPE, budget=budget))
    instance = complete(engine, instance, "plan_timeline", TIMELINE)
    instance = complete(engine, instance, "allocate_resources", RESOURCES)
    assert sorted(open_tasks(instance)) == ["confirm_engineering", "plan_qa"]
    instance = complete(engine, instance, "confirm_engineering", ENGINEERING)
    assert list(open_tasks(instance)) == ["plan_qa"]  # the join waits for the QA lead
    instance = complete(engine, instance, "plan_qa", QA)
    probability, impact = risk
    identify = {"probability": probability, "impact": impact, "risk_description": "New SSO vendor"}
    return complete(engine, instance, "identify_risks", identify)


def kickoff(engine, instance: dict) -> dict:
    """Communication plan and client approval; returns the instance waiting for the e-mails."""
    instance = complete(engine, instance, "plan_communication", COMMUNICATION)
    return complete(engine, instance, "client_kickoff", APPROVED)


def mails_to(smtp) -> dict:
    return {tuple(e.rcpt_tos): read_mail(e) for e in smtp.envelopes}


def recipients(smtp) -> Counter:
    """How many e-mails each recipient got (the two kickoff e-mails run in parallel, in any order)."""
    return Counter(address for envelope in smtp.envelopes for address in envelope.rcpt_tos)


def created(engine, instance_id: int) -> list[str]:
    return [e["element_id"] for e in engine.history(instance_id) if e["type"] == "task_created"]


def decisions(engine, instance_id: int, gateway: str) -> list[list[str]]:
    history = engine.history(instance_id)
    return [e["data"]["taken"] for e in history if e["type"] == "gateway_decision" and e["element_id"] == gateway]


# -- happy path ------------------------------------------------------------------------------------
def test_low_risk_project_kicks_off_without_the_sponsor(projects, smtp):
    instance = start(projects)
    scope = open_tasks(instance)["define_scope"]
    assert (scope["candidate_group"], scope["title"], scope["form"]) == (
        "project_manager",
        "Define scope",
        "forms/project_scope.json",
    )
    instance = complete(projects, instance, "define_scope", SCOPE)
    assert open_tasks(instance)["plan_timeline"]["candidate_group"] == "project_manager"
    instance = complete(projects, instance, "plan_timeline", TIMELINE)
    assert open_tasks(instance)["allocate_resources"]["candidate_group"] == "delivery_manager"
    instance = complete(projects, instance, "allocate_resources", RESOURCES)
    leads = open_tasks(instance)
    assert (leads["confirm_engineering"]["candidate_group"], leads["plan_qa"]["candidate_group"]) == (
        "engineer",
        "qa_reviewer",
    )
    instance = complete(projects, instance, "confirm_engineering", ENGINEERING)
    instance = complete(projects, instance, "plan_qa", QA)
    identify = open_tasks(instance)["identify_risks"]  # inside the called risk_assessment
    assert identify["candidate_group"] == "project_manager"
    instance = complete(
        projects, instance, "identify_risks", {"probability": 2, "impact": 2, "risk_description": "Known stack"}
    )

    data = instance["data"]
    assert data["risk"] == {"score": 4, "band": "low"} and data["risk_band"] == "low"
    assert (data["needs_sponsor"], data["approval_reason"]) == (False, "standard project")
    assert list(open_tasks(instance)) == ["plan_communication"]
    assert projects.list_tasks(candidate_group="sponsor") == []

    instance = complete(projects, instance, "plan_communication", COMMUNICATION)
    approval = open_tasks(instance)["client_kickoff"]
    assert (approval["candidate_group"], approval["title"]) == ("client", "Approve kickoff")
    instance = complete(projects, instance, "client_kickoff", APPROVED)
    assert instance["tasks"] == [] and instance["data"]["project_status"] == "active"
    assert smtp.envelopes == []  # the e-mails are background jobs
    assert jobs.run_due(projects) == 2

    done = projects.get_instance(instance["id"])
    assert done["status"] == "completed"
    assert done["data"]["team_notification"]["delivered"] is True
    assert done["data"]["client_notification"]["delivered"] is True
    assert (done["data"]["sponsor_rework_count"], done["data"]["client_change_count"]) == (0, 0)
    assert created(projects, instance["id"]) == [*CREATED_UNTIL_RISK, "plan_communication", "client_kickoff"]
    history = projects.history(instance["id"])
    rule = [e for e in history if e["type"] == "activity_completed" and e["element_id"] == "decide_approval"]
    assert [e["data"]["type"] for e in rule] == ["BusinessRuleTask"]
    assert decisions(projects, instance["id"], "gw_sponsor") == [["gw_plan"]]
    assert decisions(projects, instance["id"], "gw_kickoff") == [["activate_project"]]


def test_kickoff_emails_reach_the_team_and_the_client(projects, smtp):
    instance = plan_until_risk(projects, start(projects), risk=HIGH)
    instance = complete(projects, instance, "sponsor_approval", {"sponsor_decision": "approve"})
    kickoff(projects, instance)
    assert jobs.run_due(projects) == 2
    mails = mails_to(smtp)
    assert set(mails) == {(CLIENT_EMAIL,), (TEAM_EMAIL,)}

    team_mail, team_body = mails[(TEAM_EMAIL,)]
    assert team_mail["Subject"] == "Kickoff: Apollo portal for ACME on 2030-01-07"
    assert team_mail["From"] == "delivery@sdf.example"
    assert "ACME approved the kickoff of Apollo portal. You are on the team" in team_body
    assert "Deliverables:\n  - Customer portal\n  - Single sign-on\n" in team_body
    assert "Milestones:\n  - Beta release: 2030-03-29\n  - Go-live: 2030-06-28\n" in team_body
    assert "Team:\n  - engineer at 100% (architecture)\n  - qa_reviewer at 50% (test_planning)\n" in team_body
    assert "Status reports: weekly, via email, video_call." in team_body
    assert "Risk: high (New SSO vendor)" in team_body
    assert "Next step: prepare the kickoff meeting on 2030-01-07" in team_body

    client_mail, client_body = mails[(CLIENT_EMAIL,)]
    assert client_mail["Subject"] == "Kickoff: Apollo portal for ACME on 2030-01-07"
    assert "thank you for approving the kickoff of Apollo portal" in client_body
    assert "Success criteria:\n  - 90% of orders placed online\n" in client_body
    assert "Status meeting: Mondays 10:00 CET\nEscalations: pat@sdf.example\n" in client_body
    assert "Risk:" not in client_body and "Team:" not in client_body  # internal details stay internal


# -- the decision table ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("risk", "band", "budget", "needs_sponsor", "reason"),
    [
        (LOW, "low", 0, False, "standard project"),
        (LOW, "low", 249999.99, False, "standard project"),
        (LOW, "low", 250000, True, "large budget"),
        (MEDIUM_LOW, "medium", 120000, False, "standard project"),
        (MEDIUM, "medium", 249999, False, "standard project"),  # score 9: the top of medium
        (MEDIUM, "medium", 250000, True, "large budget"),
        (HIGH, "high", 0, True, "high risk"),  # score 10: the bottom of high
        (HIGH_TOP, "high", 120000, True, "high risk"),
        (CRITICAL, "critical", 120000, True, "high risk"),
        (CRITICAL, "critical", 5000000, True, "high risk"),
    ],
)
def test_the_decision_table_routes_at_its_boundaries(projects, risk, band, budget, needs_sponsor, reason):
    instance = plan_until_risk(projects, start(projects), risk=risk, budget=budget)
    data = instance["data"]
    assert (data["risk_band"], data["budget"]) == (band, budget)
    assert (data["needs_sponsor"], data["approval_reason"]) == (needs_sponsor, reason)
    [task] = instance["tasks"]
    if needs_sponsor:
        assert (task["element_id"], task["candidate_group"]) == ("sponsor_approval", "sponsor")
        assert task["priority"] >= 80
    else:
        assert (task["element_id"], task["candidate_group"]) == ("plan_communication", "project_manager")
    expected = "sponsor_approval" if needs_sponsor else "gw_plan"
    assert decisions(projects, instance["id"], "gw_sponsor") == [[expected]]


# -- the sponsor ----------------------------------------------------------------------------------------
def test_high_risk_waits_for_the_sponsor_group(projects):
    instance = plan_until_risk(projects, start(projects), risk=HIGH)
    sponsor = only_task(instance)
    assert (sponsor["element_id"], sponsor["title"], sponsor["assignee"]) == (
        "sponsor_approval",
        "Sponsor approval",
        None,
    )
    assert [t["id"] for t in projects.list_tasks(candidate_group="sponsor")] == [sponsor["id"]]
    assert instance["data"]["approval_reason"] == "high risk"
    with pytest.raises(Forbidden):  # only sponsors decide
        complete(projects, instance, "sponsor_approval", {"sponsor_decision": "approve"}, actor="pat")
    with pytest.raises(FormValidationError):
        complete(projects, instance, "sponsor_approval", {"sponsor_decision": "maybe"}, actor="sam")
    instance = complete(projects, instance, "sponsor_approval", {"sponsor_decision": "approve"}, actor="sam")
    assert list(open_tasks(instance)) == ["plan_communication"]
    assert decisions(projects, instance["id"], "gw_sponsor_decision") == [["gw_plan"]]


def test_sponsor_sends_the_scope_back_three_times_then_approves(projects):
    instance = start(projects)
    for round_ in range(1, 4):
        instance = plan_until_risk(projects, instance, risk=CRITICAL, budget=400000)
        assert list(open_tasks(instance)) == ["sponsor_approval"]
        with pytest.raises(FormValidationError) as info:  # a rework needs a comment
            complete(projects, instance, "sponsor_approval", {"sponsor_decision": "rework"})
        assert [e["field"] for e in info.value.errors] == ["sponsor_comment"]
        comment = f"Round {round_}: cut the scope, the risk is too high"
        instance = complete(
            projects, instance, "sponsor_approval", {"sponsor_decision": "rework", "sponsor_comment": comment}
        )
        assert list(open_tasks(instance)) == ["define_scope"]  # back to the project manager
        assert instance["data"]["sponsor_rework_count"] == round_
        assert instance["data"]["rework_reason"] == comment
    instance = plan_until_risk(projects, instance, risk=HIGH)
    instance = complete(projects, instance, "sponsor_approval", {"sponsor_decision": "approve"})
    assert list(open_tasks(instance)) == ["plan_communication"]
    assert instance["data"]["sponsor_rework_count"] == 3

    names = created(projects, instance["id"])
    assert names.count("define_scope") == 4 and names.count("identify_risks") == 4
    assert names.count("confirm_engineering") == 4 and names.count("sponsor_approval") == 4
    taken = decisions(projects, instance["id"], "gw_sponsor_decision")
    assert taken == [["record_rework"]] * 3 + [["gw_plan"]]
    # the audit log is the decision log: who decided what, with which comment
    sponsor = [
        (e["actor"], e["data"]["data"]["sponsor_decision"], e["data"]["data"].get("sponsor_comment"))
        for e in projects.history(instance["id"])
        if e["type"] == "task_completed" and e["element_id"] == "sponsor_approval"
    ]
    assert sponsor == [("sam", "rework", f"Round {n}: cut the scope, the risk is too high") for n in (1, 2, 3)] + [
        ("sam", "approve", None)
    ]


def test_a_reworked_scope_below_the_thresholds_skips_the_sponsor(projects):
    instance = plan_until_risk(projects, start(projects), risk=MEDIUM, budget=300000)
    assert instance["data"]["approval_reason"] == "large budget"
    rework = {"sponsor_decision": "rework", "sponsor_comment": "Split it into two phases"}
    instance = complete(projects, instance, "sponsor_approval", rework)
    instance = plan_until_risk(projects, instance, risk=MEDIUM, budget=150000)
    assert instance["data"]["needs_sponsor"] is False
    assert list(open_tasks(instance)) == ["plan_communication"]
    assert decisions(projects, instance["id"], "gw_sponsor") == [["sponsor_approval"], ["gw_plan"]]


def test_sponsor_cancellation_ends_the_project_without_kickoff(projects, smtp):
    instance = plan_until_risk(projects, start(projects), risk=CRITICAL)
    with pytest.raises(FormValidationError):
        complete(projects, instance, "sponsor_approval", {"sponsor_decision": "cancel", "sponsor_comment": ""})
    cancel = {"sponsor_decision": "cancel", "sponsor_comment": "Not worth the risk"}
    done = complete(projects, instance, "sponsor_approval", cancel)
    assert done["status"] == "completed" and done["tasks"] == []
    assert done["data"]["project_status"] == "cancelled"
    assert done["data"]["cancel_reason"] == "Not worth the risk"
    assert "client_kickoff" not in created(projects, done["id"])
    assert jobs.run_due(projects) == 0 and smtp.envelopes == []


# -- the client ------------------------------------------------------------------------------------------
def test_client_asks_for_changes_three_times_then_approves(projects, smtp):
    instance = plan_until_risk(projects, start(projects))
    for round_ in range(1, 4):
        instance = complete(projects, instance, "plan_communication", dict(COMMUNICATION, reporting_cadence="monthly"))
        with pytest.raises(FormValidationError) as info:  # changes must be described
            complete(projects, instance, "client_kickoff", {"kickoff_approved": False})
        assert [e["field"] for e in info.value.errors] == ["change_requests"]
        changes = {"kickoff_approved": False, "change_requests": f"Round {round_}: weekly reports, please"}
        instance = complete(projects, instance, "client_kickoff", changes)
        assert list(open_tasks(instance)) == ["plan_communication"]  # back to the plan
        assert open_tasks(instance)["plan_communication"]["candidate_group"] == "project_manager"
        assert instance["data"]["client_change_count"] == round_
        assert instance["data"]["change_requests"] == changes["change_requests"]
    instance = kickoff(projects, instance)
    assert jobs.run_due(projects) == 2
    done = projects.get_instance(instance["id"])
    assert done["status"] == "completed"
    assert (done["data"]["client_change_count"], done["data"]["reporting_cadence"]) == (3, "weekly")
    names = created(projects, instance["id"])
    assert names.count("plan_communication") == 4 and names.count("client_kickoff") == 4
    assert names.count("define_scope") == 1  # the client's changes do not reopen the scope
    assert decisions(projects, instance["id"], "gw_kickoff") == [["record_changes"]] * 3 + [["activate_project"]]
    assert len(smtp.envelopes) == 2


# -- assignment by skill and workload ---------------------------------------------------------------------
def test_leads_are_picked_by_skill_then_workload(projects):
    first = start(projects)
    first = complete(projects, first, "define_scope", SCOPE)
    first = complete(projects, first, "plan_timeline", TIMELINE)
    first = complete(projects, first, "allocate_resources", RESOURCES)
    leads = open_tasks(first)
    # ada and ben both have the skill and no work: the higher level wins; eli lacks the skill
    assert leads["confirm_engineering"]["assignee"] == "ada"
    assert leads["plan_qa"]["assignee"] == "quentin"  # quinn has no test_planning skill
    assert leads["confirm_engineering"]["status"] == "claimed"

    second = start(projects, project_name="Hermes")
    second = complete(projects, second, "define_scope", dict(SCOPE, project_name="Hermes"))
    second = complete(projects, second, "plan_timeline", TIMELINE)
    second = complete(projects, second, "allocate_resources", RESOURCES)
    assert open_tasks(second)["confirm_engineering"]["assignee"] == "ben"  # ada is busy with Apollo

    assigned = [e for e in projects.history(second["id"]) if e["type"] == "task_assigned"]
    assert [(e["element_id"], e["data"]["assignee"], e["data"]["by"]) for e in assigned] == [
        ("confirm_engineering", "ben", "choose_assignee"),
        ("plan_qa", "quentin", "choose_assignee"),
    ]


def test_without_a_qualified_member_the_lead_task_stays_open_for_the_group(team):
    team.add_user("ada", groups_=["engineer"], skills={"architecture": 4})
    team.deploy(DEPLOY)
    instance = start(team)
    instance = complete(team, instance, "define_scope", SCOPE)
    instance = complete(team, instance, "plan_timeline", TIMELINE)
    instance = complete(team, instance, "allocate_resources", RESOURCES)
    qa = open_tasks(instance)["plan_qa"]
    assert (qa["assignee"], qa["status"], qa["candidate_group"]) == (None, "open", "qa_reviewer")
    assert open_tasks(instance)["confirm_engineering"]["assignee"] == "ada"
    instance = team.complete(qa["id"], "quinn", QA)  # any QA reviewer may take it
    assert "plan_qa" not in open_tasks(instance)


# -- forms ----------------------------------------------------------------------------------------------------
def errors_of(engine, instance: dict, element_id: str, data: dict) -> list[str]:
    with pytest.raises(FormValidationError) as info:
        complete(engine, instance, element_id, data)
    return sorted({e["field"] for e in info.value.errors})


def test_forms_reject_bad_input_field_by_field(projects):
    instance = start(projects)
    bad_scope = dict(SCOPE, deliverables=[], budget=-1, client_email="not an address")
    assert errors_of(projects, instance, "define_scope", bad_scope) == ["budget", "client_email", "deliverables"]
    missing = {k: v for k, v in SCOPE.items() if k != "success_criteria"}
    assert errors_of(projects, instance, "define_scope", missing) == ["success_criteria"]
    instance = complete(projects, instance, "define_scope", SCOPE)

    undated = dict(TIMELINE, milestones=[{"name": "Beta release"}, {"name": "Go-live", "date": "next week"}])
    assert errors_of(projects, instance, "plan_timeline", undated) == ["milestones.0.date", "milestones.1.date"]
    assert errors_of(projects, instance, "plan_timeline", dict(TIMELINE, milestones=[])) == ["milestones"]
    instance = complete(projects, instance, "plan_timeline", TIMELINE)

    thin = {
        "team": [{"role": "engineer", "skills": ["architecture"], "allocation_percent": 5}],
        "team_email": TEAM_EMAIL,
    }
    assert errors_of(projects, instance, "allocate_resources", thin) == ["team.0.allocation_percent"]
    unknown_role = {
        "team": [{"role": "wizard", "skills": ["magic"], "allocation_percent": 50}],
        "team_email": TEAM_EMAIL,
    }
    assert errors_of(projects, instance, "allocate_resources", unknown_role) == ["team.0.role"]
    instance = complete(projects, instance, "allocate_resources", RESOURCES)

    no_capacity = dict(ENGINEERING, capacity_confirmed=False)
    assert errors_of(projects, instance, "confirm_engineering", no_capacity) == ["capacity_comment"]
    assert errors_of(projects, instance, "plan_qa", dict(QA, quality_gates=[])) == ["quality_gates"]
    instance = complete(projects, instance, "confirm_engineering", ENGINEERING)
    instance = complete(projects, instance, "plan_qa", QA)
    assert errors_of(
        projects, instance, "identify_risks", {"probability": 6, "impact": 0, "risk_description": "x"}
    ) == [
        "impact",
        "probability",
        "risk_description",
    ]
    instance = complete(
        projects, instance, "identify_risks", {"probability": 1, "impact": 1, "risk_description": "Known stack"}
    )

    pigeon = dict(COMMUNICATION, channels=["pigeon"], reporting_cadence="daily")
    assert errors_of(projects, instance, "plan_communication", pigeon) == ["channels.0", "reporting_cadence"]
    assert errors_of(projects, instance, "plan_communication", dict(COMMUNICATION, channels=["email", "email"])) == [
        "channels"
    ]
    instance = complete(projects, instance, "plan_communication", COMMUNICATION)
    assert errors_of(projects, instance, "client_kickoff", {"kickoff_approved": True}) == ["kickoff_date"]
    dated = {"kickoff_approved": True, "kickoff_date": "07/01/2030"}
    assert errors_of(projects, instance, "client_kickoff", dated) == ["kickoff_date"]
    assert open_tasks(complete(projects, instance, "client_kickoff", APPROVED)) == {}


# -- the kickoff reminder and escalation ----------------------------------------------------------------------
def test_late_kickoff_approval_reminds_the_client_and_escalates(projects, smtp):
    clock = projects.clock = OffsetClock()
    instance = plan_until_risk(projects, start(projects))
    assert instance["data"]["kickoff_reminder_after"] == "P3D"  # the default
    instance = complete(projects, instance, "plan_communication", COMMUNICATION)
    approval = open_tasks(instance)["client_kickoff"]

    clock.advance(days=2, hours=23)
    assert timers.fire_due(projects) == 0  # not due yet
    clock.advance(hours=1, seconds=1)
    assert timers.fire_due(projects) == 1
    assert jobs.run_due(projects) == 1  # the reminder e-mail
    [envelope] = smtp.envelopes
    assert envelope.rcpt_tos == [CLIENT_EMAIL]
    mail, body = read_mail(envelope)
    assert mail["Subject"] == "Update on Apollo portal: your kickoff approval"
    assert "waiting for your approval" in body and "contact pat@sdf.example" in body

    after = projects.get_instance(instance["id"])
    assert after["data"]["kickoff_reminder_delivery"]["delivered"] is True
    tasks = open_tasks(after)
    assert sorted(tasks) == ["client_kickoff", "follow_up_kickoff"]
    assert tasks["client_kickoff"]["id"] == approval["id"]  # the approval stays with the client
    follow_up = tasks["follow_up_kickoff"]
    assert follow_up["candidate_group"] == "delivery_manager"
    assert follow_up["priority"] > tasks["client_kickoff"]["priority"]  # BPMN 85 (+ due-soon bonus) over 70
    assert timers.waiting_timers(projects) == []  # one reminder only

    after = complete(projects, after, "client_kickoff", APPROVED)
    assert list(open_tasks(after)) == ["follow_up_kickoff"]
    with pytest.raises(FormValidationError):
        complete(projects, after, "follow_up_kickoff", {"follow_up_action": "Called"})
    after = complete(
        projects, after, "follow_up_kickoff", {"follow_up_action": "Called Casey", "client_contacted": True}
    )
    assert jobs.run_due(projects) == 2
    done = projects.get_instance(instance["id"])
    assert done["status"] == "completed"
    assert recipients(smtp) == {CLIENT_EMAIL: 2, TEAM_EMAIL: 1}  # the reminder, then the kickoff


def test_the_reminder_delay_comes_from_the_start_data(projects, smtp):
    clock = projects.clock = OffsetClock()
    instance = plan_until_risk(projects, start(projects, kickoff_reminder_after="PT4H"))
    instance = complete(projects, instance, "plan_communication", COMMUNICATION)
    clock.advance(hours=3, minutes=59)
    assert timers.fire_due(projects) == 0
    clock.advance(minutes=1, seconds=1)
    assert timers.fire_due(projects) == 1
    assert jobs.run_due(projects) == 1
    assert "follow_up_kickoff" in open_tasks(projects.get_instance(instance["id"]))


def test_an_answer_in_time_sends_no_reminder(projects, smtp):
    clock = projects.clock = OffsetClock()
    instance = plan_until_risk(projects, start(projects))
    instance = kickoff(projects, instance)
    clock.advance(days=10)
    assert timers.fire_due(projects) == 0
    assert jobs.run_due(projects) == 2
    assert recipients(smtp) == {CLIENT_EMAIL: 1, TEAM_EMAIL: 1}
    assert "follow_up_kickoff" not in created(projects, instance["id"])
