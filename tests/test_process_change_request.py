"""The shipped change request process: two ways in, impact and risk, a decision table, approvals, e-mail.

``change_request`` starts on the message ``change_submitted`` (the payload, in ``change``, is
checked and copied into the process data) or by hand (the project manager fills "Describe the
change"). The project manager assesses the impact, the called ``risk_assessment`` scores the
risk, and the decision table ``change_approval_route`` picks the route: the project manager
alone, or the project manager and the sponsor in parallel; the client signs off when the cost
goes up. An approved change updates ``project``; either way the client is e-mailed the
decision (a real SMTP server on loopback), with the reason on a rejection.
"""

from __future__ import annotations

import email
import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine
from SpiffWorkflow.dmn.parser.BpmnDmnParser import BpmnDmnParser

from engine import jobs
from engine.errors import FormValidationError, InvalidInput, NotFound
from engine.schema import instances
from engine.scripting import create_script_engine
from tests.conftest import BPMN, only_task, open_tasks, subscription_count

PROCESSES = Path(__file__).resolve().parent.parent / "processes"
DECISION = PROCESSES / "change_approval_route.dmn"
PROJECT = {"name": "Apollo", "scope": ["Client portal"], "budget": 50000, "duration_days": 90, "end_date": "2030-03-01"}
PAYLOAD = {
    "title": "Add a FAQ page",
    "description": "Clients keep asking the same questions.",
    "client_email": "casey@client.example",
    "requested_by": "Casey",
    "project": PROJECT,
}
IMPACT = {"scope": "One more page: FAQ", "timeline_days": 2, "size": "small"}
# (probability, impact) -> band of the built-in score_risk matrix, at the edges of each band:
# 4 is the highest low, 9 the highest medium, 10 the lowest high, 20 the lowest critical product
RISKS = {"low": (2, 2), "medium": (3, 3), "high": (2, 5), "critical": (4, 5)}
SIZES = ("small", "medium", "large")
COSTS = (-50, 0, 0.01)  # cheaper, unchanged, the smallest increase


@pytest.fixture
def changes(team):
    team.add_user("sam", groups_=["sponsor"])
    team.deploy([PROCESSES / "risk_assessment.bpmn", PROCESSES / "change_request.bpmn", DECISION])
    return team


def submitted(engine, payload=PAYLOAD) -> dict:
    [instance] = engine.correlate_message("change_submitted", payload, actor="casey")
    return instance


def assessed(engine, size="small", band="low", cost_change=0, instance=None) -> dict:
    """Assess the impact and the risk of a submitted change; returns the instance (approvals open)."""
    instance = instance or submitted(engine)
    assess = open_tasks(instance)["assess_impact"]
    instance = engine.complete(assess["id"], "pat", dict(IMPACT, size=size, cost_change=cost_change))
    identify = open_tasks(instance)["identify_risks"]
    assert identify["candidate_group"] == "project_manager"
    probability, impact = RISKS[band]
    return engine.complete(
        identify["id"], "pat", {"probability": probability, "impact": impact, "risk_description": "Scope creep"}
    )


def decide(engine, instance: dict, element_id: str, actor: str, data: dict) -> dict:
    return engine.complete(open_tasks(instance)[element_id]["id"], actor, data)


def delivered(engine, instance: dict, smtp) -> tuple[dict, email.message.Message, str]:
    """Run the notify job; returns the finished instance and the one e-mail it sent."""
    assert instance["tasks"] == [] and instance["status"] != "completed"  # waiting for the notify job
    assert jobs.run_due(engine) == 1
    [envelope] = smtp.envelopes
    assert envelope.rcpt_tos == ["casey@client.example"]
    mail = email.message_from_bytes(envelope.content)
    body = mail.get_payload(decode=True).decode().replace("\r\n", "\n")
    after = engine.get_instance(instance["id"])
    assert after["status"] == "completed"
    assert after["data"]["decision_delivery"]["delivered"] is True
    return after, mail, body


def ended_at(engine, instance_id: int) -> list[str]:
    return [e["element_id"] for e in engine.history(instance_id) if e["element_id"] in ("end_approved", "end_rejected")]


def instance_count(engine) -> int:
    with engine.db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(instances)).scalar()


# -- starting by message ---------------------------------------------------------------------------
def test_message_start_checks_the_payload_and_copies_it_into_the_data(changes):
    instance = submitted(changes)
    assert instance["process_id"] == "change_request" and instance["started_by"] == "casey"
    data = instance["data"]
    assert data["change"] == PAYLOAD  # the message as received (messageVariable)
    assert {k: data[k] for k in PAYLOAD} == PAYLOAD
    assess = only_task(instance)
    assert (assess["element_id"], assess["title"], assess["candidate_group"]) == (
        "assess_impact",
        "Assess impact",
        "project_manager",
    )
    history = changes.history(instance["id"])
    assert [e["type"] for e in history][:2] == ["instance_started", "message_correlated"]
    assert "check_change" in [e["element_id"] for e in history if e["type"] == "activity_completed"]
    assert subscription_count(changes) == 0  # nothing waits for a message afterwards


def test_optional_fields_may_be_left_out_of_the_message(changes):
    minimal = {k: PAYLOAD[k] for k in ("title", "description", "client_email")}
    data = submitted(changes, minimal)["data"]
    assert data["requested_by"] == "" and data["project"] == {}


def test_every_message_starts_its_own_instance(changes):
    first = submitted(changes)
    second = submitted(changes, dict(PAYLOAD, title="Dark mode"))
    assert first["id"] != second["id"]
    assert [changes.get_instance(i)["data"]["title"] for i in (first["id"], second["id"])] == [
        "Add a FAQ page",
        "Dark mode",
    ]


def test_a_bad_payload_is_refused_field_by_field_and_creates_nothing(changes):
    """The message start event carries the same form as the by-hand "Describe the change"."""
    bad = {"title": "x", "description": "x", "client_email": "not an address", "project": "Apollo"}
    with pytest.raises(FormValidationError) as info:
        changes.correlate_message("change_submitted", bad, actor="casey")
    assert info.value.message.startswith("message 'change_submitted': submitted data does not match form")
    assert {e["field"] for e in info.value.errors} == {"title", "description", "client_email", "project"}
    assert changes.list_instances(process_id="change_request") == []
    assert submitted(changes)["data"]["title"] == PAYLOAD["title"]  # the corrected message starts it


def test_an_unknown_message_name_is_a_clear_error_and_starts_nothing(changes):
    with pytest.raises(NotFound) as info:
        changes.correlate_message("change_submited", PAYLOAD, actor="casey")
    assert info.value.message == (
        "no instance waits for message 'change_submited', and no deployed process starts with it"
    )
    assert instance_count(changes) == 0


# -- starting by hand ------------------------------------------------------------------------------
def test_by_hand_the_project_manager_describes_the_change(changes):
    instance = changes.start("change_request", actor="pat")
    describe = only_task(instance)
    assert (describe["element_id"], describe["title"], describe["candidate_group"]) == (
        "describe_change",
        "Describe the change",
        "project_manager",
    )
    assert subscription_count(changes) == 0  # the message start event was cancelled by the plain start
    with pytest.raises(FormValidationError) as info:
        changes.complete(describe["id"], "pat", dict(PAYLOAD, client_email="casey", project={"budget": 5}))
    assert {e["field"] for e in info.value.errors} == {"client_email", "project.name"}
    instance = changes.complete(describe["id"], "pat", PAYLOAD)
    assert only_task(instance)["element_id"] == "assess_impact"
    assert "check_change" not in [e["element_id"] for e in changes.history(instance["id"])]
    # a message now starts a new instance: the one started by hand does not take it
    assert submitted(changes)["id"] != instance["id"]


def test_by_hand_the_start_data_is_kept_and_updated_on_approval(changes, smtp):
    instance = changes.start("change_request", {"project": PROJECT}, actor="pat")
    description = {k: PAYLOAD[k] for k in ("title", "description", "client_email")}
    instance = changes.complete(only_task(instance)["id"], "pat", description)
    instance = assessed(changes, "small", "low", 0, instance=instance)
    instance = decide(changes, instance, "pm_approval", "pat", {"approved": True})
    after, mail, _ = delivered(changes, instance, smtp)
    assert after["data"]["project"]["scope"] == ["Client portal", "One more page: FAQ"]
    assert mail["Subject"] == "Change request approved: Add a FAQ page (Apollo)"


def test_by_hand_start_of_a_process_that_only_starts_by_message_is_refused(team):
    """A process whose only start event catches a message cannot be started by hand: the instance
    would wait and swallow the next message, which should start an instance of its own."""
    team.deploy([BPMN / "change_request_msg.bpmn"])
    with pytest.raises(InvalidInput) as info:
        team.start("change_request_msg", {"title": "by hand"}, actor="pat")
    assert "starts by message (change_submitted), not by hand" in str(info.value)
    assert team.list_instances() == [] and subscription_count(team) == 0
    [instance] = team.correlate_message("change_submitted", {"title": "by message"}, actor="casey")
    assert only_task(instance)["element_id"] == "assess_change"


# -- the decision table ----------------------------------------------------------------------------
def collecting_table():
    """The decision table of change_approval_route, switched to COLLECT to see every matching rule."""
    parser = BpmnDmnParser()
    parser.add_dmn_file(str(DECISION))
    dmn = parser.dmn_parsers["change_approval_route"]
    dmn.parse()
    [table] = dmn.decision.decisionTables
    assert table.hit_policy == "UNIQUE"
    table.hit_policy = "COLLECT"
    return table


def test_every_combination_matches_exactly_one_rule():
    """UNIQUE in SpiffWorkflow takes the first match without checking: check the table instead.
    Unknown sizes and risk bands (a team may rename the bands) also match one rule."""
    rules = DMNEngine(collecting_table())
    script_engine = create_script_engine()
    matches = {}
    for size, band, cost in itertools.product((*SIZES, "huge"), (*RISKS, "severe"), (-1, 0, 0.001, 5000)):
        data = {"size": size, "risk_band": band, "cost_change": cost}
        task = SimpleNamespace(data=data, workflow=SimpleNamespace(script_engine=script_engine))
        matches[size, band, cost] = [rule.id for rule in rules.decide(task)]
    assert {key: ids for key, ids in matches.items() if len(ids) != 1} == {}
    assert matches["small", "medium", 0] == ["r_small_low_same_cost"]
    assert matches["medium", "high", 0.001] == ["r_small_risky_cost_changed"]
    assert matches["large", "low", -1] == ["r_large_cost_changed"]  # cheaper: the client signs off too
    assert matches["large", "low", 0] == ["r_large_same_cost"]
    assert matches["huge", "severe", 5000] == ["r_large_cost_changed"]  # unknown values: the careful route


def expected_route(size: str, band: str) -> str:
    return "pm_and_sponsor" if size == "large" or band in ("high", "critical") else "pm_only"


@pytest.mark.parametrize(("size", "band", "cost_change"), list(itertools.product(SIZES, RISKS, COSTS)))
def test_route_at_every_boundary(changes, size, band, cost_change):
    instance = assessed(changes, size, band, cost_change)
    data = instance["data"]
    assert data["risk_band"] == band
    route = expected_route(size, band)
    assert (data["route"], data["client_signoff"]) == (route, cost_change != 0)  # cheaper too: the contract changes
    groups = {element: task["candidate_group"] for element, task in open_tasks(instance).items()}
    if route == "pm_only":
        assert groups == {"pm_approval": "project_manager"}
    else:
        assert groups == {"pm_approval_joint": "project_manager", "sponsor_approval": "sponsor"}
    decisions = [e["data"]["taken"] for e in changes.history(instance["id"]) if e["element_id"] == "gw_route"]
    assert decisions == [["pm_approval"] if route == "pm_only" else ["split_approvals"]]


# -- approvals, project update and e-mail ----------------------------------------------------------
def test_approved_change_updates_the_project_and_emails_the_client(changes, smtp):
    instance = assessed(changes, "small", "low", cost_change=1500)
    instance = decide(changes, instance, "pm_approval", "pat", {"approved": True})
    client = only_task(instance)
    assert (client["element_id"], client["candidate_group"]) == ("client_signoff_task", "client")
    assert smtp.envelopes == []
    instance = decide(changes, instance, "client_signoff_task", "casey", {"client_approved": True})
    after, mail, body = delivered(changes, instance, smtp)
    data = after["data"]
    assert data["project_updated"] is True and "rejection_reason" not in data
    assert data["project"] == {
        "name": "Apollo",
        "scope": ["Client portal", "One more page: FAQ"],
        "budget": 51500,
        "duration_days": 92,
        "end_date": "2030-03-03",
        "changes": [
            {
                "title": "Add a FAQ page",
                "scope": "One more page: FAQ",
                "timeline_days": 2,
                "cost_change": 1500,
                "size": "small",
                "risk_band": "low",
                "route": "pm_only",
            }
        ],
    }
    assert mail["Subject"] == "Change request approved: Add a FAQ page (Apollo)"
    assert 'your change request "Add a FAQ page" on Apollo has been approved' in body
    assert "(by the project manager, the client)" in body
    assert "Timeline: +2 day(s); the project now ends on 2030-03-03\n" in body
    assert "Cost: 1500; the budget is now 51500\n" in body
    assert ended_at(changes, instance["id"]) == ["end_approved"]


def test_large_change_opens_pm_and_sponsor_approval_at_once_and_the_join_waits(changes, smtp):
    instance = assessed(changes, "large", "low", cost_change=0)
    instance = decide(changes, instance, "sponsor_approval", "sam", {"sponsor_approved": True})
    assert list(open_tasks(instance)) == ["pm_approval_joint"]  # the join waits for the PM
    instance = decide(changes, instance, "pm_approval_joint", "pat", {"approved": True})
    after, mail, body = delivered(changes, instance, smtp)
    assert after["data"]["project"]["budget"] == 50000  # no cost change
    assert "(by the project manager, the sponsor)" in body


def test_pm_rejection_emails_the_reason_and_leaves_the_project_alone(changes, smtp):
    instance = assessed(changes, cost_change=100)
    with pytest.raises(FormValidationError):  # a rejection needs a reason
        decide(changes, instance, "pm_approval", "pat", {"approved": False})
    instance = decide(changes, instance, "pm_approval", "pat", {"approved": False, "reason": "Out of budget"})
    after, mail, body = delivered(changes, instance, smtp)  # the client was not asked to sign off
    data = after["data"]
    assert (data["rejected_by"], data["rejection_reason"]) == ("project_manager", "Out of budget")
    assert data["project"] == PROJECT and "project_updated" not in data
    assert mail["Subject"] == "Change request rejected: Add a FAQ page (Apollo)"
    assert "has been rejected by the project manager.\n\nReason: Out of budget\n" in body
    assert ended_at(changes, instance["id"]) == ["end_rejected"]
    assert "client_signoff_task" not in [e["element_id"] for e in changes.history(instance["id"])]


@pytest.mark.parametrize(
    ("pm", "sponsor", "rejected_by", "reasons"),
    [
        ({"approved": True}, {"sponsor_approved": False, "sponsor_reason": "Not this year"}, "sponsor", 1),
        ({"approved": False, "reason": "Team is full"}, {"sponsor_approved": True}, "project_manager", 1),
        (
            {"approved": False, "reason": "Team is full"},
            {"sponsor_approved": False, "sponsor_reason": "Not this year"},
            "project_manager",
            2,
        ),
    ],
)
def test_one_rejection_of_the_parallel_approvals_rejects_the_change(changes, smtp, pm, sponsor, rejected_by, reasons):
    instance = assessed(changes, "medium", "high", cost_change=100)  # the client is not asked after a rejection
    instance = decide(changes, instance, "sponsor_approval", "sam", sponsor)
    instance = decide(changes, instance, "pm_approval_joint", "pat", pm)
    after, mail, body = delivered(changes, instance, smtp)
    data = after["data"]
    given = [{"by": "project_manager", "reason": pm.get("reason")}] if not pm["approved"] else []
    given += [{"by": "sponsor", "reason": sponsor.get("sponsor_reason")}] if not sponsor["sponsor_approved"] else []
    assert data["rejections"] == given and len(given) == reasons
    assert (data["rejected_by"], data["rejection_reason"]) == (rejected_by, given[0]["reason"])
    assert data["project"] == PROJECT and "project_updated" not in data
    assert f"has been rejected by the {rejected_by.replace('_', ' ')}.\n\nReason: {given[0]['reason']}\n" in body
    if reasons == 2:
        assert "All reasons given:\n  - project manager: Team is full\n  - sponsor: Not this year\n" in body
    history = changes.history(instance["id"])
    completed = [(e["element_id"], e["actor"]) for e in history if e["type"] == "task_completed"]
    assert ("sponsor_approval", "sam") in completed and ("pm_approval_joint", "pat") in completed
    assert "client_signoff_task" not in [e["element_id"] for e in history]


def test_client_rejection_rejects_the_change(changes, smtp):
    instance = assessed(changes, "small", "low", cost_change=100)
    instance = decide(changes, instance, "pm_approval", "pat", {"approved": True})
    with pytest.raises(FormValidationError):  # declining needs a reason
        decide(changes, instance, "client_signoff_task", "casey", {"client_approved": False})
    instance = decide(
        changes, instance, "client_signoff_task", "casey", {"client_approved": False, "client_reason": "Too expensive"}
    )
    after, _, body = delivered(changes, instance, smtp)
    assert (after["data"]["rejected_by"], after["data"]["rejection_reason"]) == ("client", "Too expensive")
    assert "project_updated" not in after["data"]
    assert "has been rejected by the client.\n\nReason: Too expensive\n" in body


def test_the_audit_history_is_the_decision_log(changes, smtp):
    instance = assessed(changes, "large", "medium", cost_change=10)
    instance = decide(changes, instance, "pm_approval_joint", "pat", {"approved": True})
    instance = decide(changes, instance, "sponsor_approval", "sam", {"sponsor_approved": True})
    instance = decide(changes, instance, "client_signoff_task", "casey", {"client_approved": True})
    delivered(changes, instance, smtp)
    history = changes.history(instance["id"])
    created = [(e["element_id"], e["data"]["candidate_group"]) for e in history if e["type"] == "task_created"]
    assert created == [
        ("assess_impact", "project_manager"),
        ("identify_risks", "project_manager"),
        ("pm_approval_joint", "project_manager"),
        ("sponsor_approval", "sponsor"),
        ("client_signoff_task", "client"),
    ]
    decisions = [
        (e["element_id"], e["actor"], e["data"]["data"])
        for e in history
        if e["type"] == "task_completed" and e["element_id"] != "identify_risks"
    ]
    assert decisions == [
        ("assess_impact", "pat", dict(IMPACT, size="large", cost_change=10)),
        ("pm_approval_joint", "pat", {"approved": True}),
        ("sponsor_approval", "sam", {"sponsor_approved": True}),
        ("client_signoff_task", "casey", {"client_approved": True}),
    ]
    routed = {e["element_id"]: e["data"]["taken"] for e in history if e["type"] == "gateway_decision"}
    assert routed["gw_route"] == ["split_approvals"]
    assert all(None not in taken for taken in routed.values())
    assert not [
        element for element in routed if element.startswith(("change_", "start"))
    ]  # start events decide nothing
    assert routed["gw_internal"] == ["gw_client"] and routed["gw_client"] == ["client_signoff_task"]
    activities = [e["element_id"] for e in history if e["type"] == "activity_completed"]
    assert activities.index("decide_route") < activities.index("update_project") < activities.index("notify_approved")
    assert history[-1]["type"] == "instance_completed"
