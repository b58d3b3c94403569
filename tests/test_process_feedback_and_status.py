"""The shipped client feedback and weekly status report processes.

``client_feedback`` is started by hand after a milestone: the client answers a satisfaction
survey (with one email reminder from a non-interrupting boundary timer), ``score_satisfaction``
bands the answers and a band other than ``healthy`` asks the delivery manager to follow up.
``status_report`` starts itself weekly (timer start event): the project manager gathers the
status, the delivery manager reviews it (rework loop) and the approved report is emailed.

Emails go to a real SMTP server on loopback (aiosmtpd).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import jobs, start_timers, timers
from engine.errors import FormValidationError
from tests.conftest import OffsetClock as Clock
from tests.conftest import only_task, read_mail

PROCESSES = Path(__file__).resolve().parent.parent / "processes"
MILESTONE = {"project": "Apollo", "milestone": "Beta release", "client_email": "casey@acme.example"}
STATUS = {
    "project": "Apollo",
    "overall_status": "AMBER",
    "progress": "On track, except single sign-on.",
    "milestones": ["Login page", "Password reset"],
    "risks": ["SSO vendor late"],
    "issues": ["Flaky staging database"],
    "next_steps": ["Single sign-on"],
    "client_email": "casey@acme.example",
}


# -- helpers and fixtures --------------------------------------------------------------------------


@pytest.fixture
def feedback(team):
    team.deploy([PROCESSES / "client_feedback.bpmn"])
    return team


@pytest.fixture
def reports(team):
    team.clock = Clock()
    team.deploy([PROCESSES / "status_report.bpmn"])
    return team


def answer(engine, csat: int, nps: int, **extra) -> dict:
    """Start a feedback round and answer the survey as the client; returns the instance."""
    instance = engine.start("client_feedback", dict(MILESTONE, **extra), actor="pat")
    survey = only_task(instance)
    assert (survey["element_id"], survey["candidate_group"]) == ("survey", "client")
    return engine.complete(survey["id"], "casey", {"csat": csat, "nps": nps, "comment": "Thanks"})


# -- client feedback --------------------------------------------------------------------------------
def test_a_healthy_answer_ends_with_thanks_and_no_follow_up(feedback):
    instance = answer(feedback, csat=5, nps=10)
    assert instance["status"] == "completed" and instance["tasks"] == []
    assert instance["data"]["satisfaction"] == {"csat": 100.0, "nps": 100.0, "band": "healthy"}
    assert instance["data"]["reminder_after"] == "P2D"  # the default
    assert feedback.list_tasks(candidate_group="delivery_manager") == []


def test_a_low_score_asks_the_delivery_manager_to_follow_up(feedback):
    instance = answer(feedback, csat=2, nps=3)
    assert instance["data"]["satisfaction"]["band"] == "critical"
    follow_up = only_task(instance)
    assert (follow_up["element_id"], follow_up["title"]) == ("follow_up", "Follow up low score")
    assert follow_up["candidate_group"] == "delivery_manager"
    with pytest.raises(FormValidationError):
        feedback.complete(follow_up["id"], "dana", {"action": "Call"})  # contacted is required
    done = feedback.complete(follow_up["id"], "dana", {"action": "Call the sponsor", "contacted": True})
    assert done["status"] == "completed" and done["tasks"] == []
    assert done["data"]["contacted"] is True


@pytest.mark.parametrize(
    ("csat", "nps", "band"),
    [
        (4, 9, "healthy"),  # CSAT 100, NPS +100
        (4, 8, "at_risk"),  # a passive: NPS 0, below 30
        (4, 7, "at_risk"),
        (4, 6, "critical"),  # a detractor: NPS -100, below 0
        (3, 10, "critical"),  # CSAT 0 (only 4-5 count as satisfied), below 50
    ],
)
def test_the_band_decides_the_route_at_its_boundaries(feedback, csat, nps, band):
    instance = answer(feedback, csat=csat, nps=nps)
    assert instance["data"]["satisfaction"]["band"] == band
    followed = [t["element_id"] for t in instance["tasks"]]
    assert followed == ([] if band == "healthy" else ["follow_up"])


def test_the_plugin_bands_aggregate_scores_at_30_and_0():
    from plugins import scoring

    # 100 answers: 30 promoters and 70 passives are NPS 30 (healthy), 29 promoters NPS 29 (at risk)
    assert scoring.score_satisfaction({"csat": 4, "nps": [10] * 30 + [8] * 70})["band"] == "healthy"
    assert scoring.score_satisfaction({"csat": 4, "nps": [10] * 29 + [8] * 71})["band"] == "at_risk"
    assert scoring.score_satisfaction({"nps": [10, 0]})["band"] == "at_risk"  # NPS 0
    assert scoring.score_satisfaction({"nps": [10, 0, 0]})["band"] == "critical"  # NPS below 0


def test_the_survey_form_is_checked(feedback):
    instance = feedback.start("client_feedback", dict(MILESTONE), actor="pat")
    survey = only_task(instance)
    for bad in ({"csat": 6, "nps": 5}, {"csat": 3, "nps": 11}, {"csat": 3}):
        with pytest.raises(FormValidationError):
            feedback.complete(survey["id"], "casey", bad)


def test_an_unanswered_survey_sends_one_reminder_and_stays_open(feedback, smtp):
    clock = feedback.clock = Clock()
    instance = feedback.start("client_feedback", dict(MILESTONE), actor="pat")  # the default: P2D
    survey = only_task(instance)
    clock.advance(days=1, hours=23)
    assert timers.fire_due(feedback) == 0  # not due yet
    clock.advance(hours=1, seconds=1)
    assert timers.fire_due(feedback) == 1
    assert jobs.run_due(feedback) == 1  # the notify job
    [envelope] = smtp.envelopes
    assert envelope.rcpt_tos == ["casey@acme.example"]
    mail, body = read_mail(envelope)
    assert mail["Subject"] == "Update on Apollo: your feedback on Beta release"
    assert "milestone Beta release" in body and "satisfaction survey" in body
    after = feedback.get_instance(instance["id"])
    assert after["status"] == "running"
    assert after["data"]["reminder_delivery"]["delivered"] is True
    assert only_task(after)["id"] == survey["id"]  # the survey is still open
    assert timers.waiting_timers(feedback) == []  # one reminder only
    done = feedback.complete(survey["id"], "casey", {"csat": 5, "nps": 9})
    assert done["status"] == "completed"
    assert len(smtp.envelopes) == 1


def test_every_thirteen_weeks_the_project_manager_prepares_a_survey(team):
    """The timer start event: the project manager names project, subject and contact, then the
    survey goes to the client as after a milestone. A start by hand skips the preparation."""
    clock = team.clock = Clock()
    team.deploy([PROCESSES / "client_feedback.bpmn"])
    by_hand = team.start("client_feedback", dict(MILESTONE), actor="pat")
    assert only_task(by_hand)["element_id"] == "survey"
    clock.advance(days=90)
    assert start_timers.fire_due(team) == 0
    clock.advance(days=1, seconds=1)
    assert start_timers.fire_due(team) == 1
    [scheduled] = [i for i in team.list_instances(process_id="client_feedback") if i["id"] != by_hand["id"]]
    prepare = only_task(team.get_instance(scheduled["id"]))
    assert (prepare["element_id"], prepare["candidate_group"]) == ("prepare_survey", "project_manager")
    with pytest.raises(FormValidationError):
        team.complete(prepare["id"], "pat", {"project": "Apollo", "milestone": "Q3"})  # the contact is required
    survey = only_task(team.complete(prepare["id"], "pat", dict(MILESTONE, milestone="the last quarter")))
    assert (survey["element_id"], survey["candidate_group"]) == ("survey", "client")
    done = team.complete(survey["id"], "casey", {"csat": 5, "nps": 10})
    assert done["status"] == "completed" and done["data"]["milestone"] == "the last quarter"
    assert done["data"]["reminder_after"] == "P2D"


# -- weekly status report ---------------------------------------------------------------------------
def started_reports(engine) -> list[dict]:
    return engine.list_instances(process_id="status_report")


def test_the_report_starts_itself_every_week(reports):
    [schedule] = [s for s in start_timers.list_schedules(reports) if s["process_id"] == "status_report"]
    assert schedule["interval_seconds"] == 7 * 24 * 3600
    reports.clock.advance(days=6)
    assert start_timers.fire_due(reports) == 0
    reports.clock.advance(days=1, minutes=1)
    assert start_timers.fire_due(reports) == 1
    [summary] = started_reports(reports)
    gather = only_task(reports.get_instance(summary["id"]))
    assert (gather["element_id"], gather["title"]) == ("gather", "Gather status")
    assert gather["candidate_group"] == "project_manager"
    reports.clock.advance(days=7)
    assert start_timers.fire_due(reports) == 1
    assert len(started_reports(reports)) == 2


def test_rework_then_approval_emails_the_rendered_report(reports, smtp):
    reports.clock.advance(days=7, minutes=1)
    assert start_timers.fire_due(reports) == 1
    [summary] = started_reports(reports)
    gather = only_task(reports.get_instance(summary["id"]))
    with pytest.raises(FormValidationError):
        reports.complete(gather["id"], "pat", dict(STATUS, overall_status="PURPLE"))

    instance = reports.complete(gather["id"], "pat", dict(STATUS, overall_status="GREEN"))
    review = only_task(instance)
    assert (review["element_id"], review["candidate_group"]) == ("review", "delivery_manager")
    with pytest.raises(FormValidationError):
        reports.complete(review["id"], "dana", {"approved": False})  # a rejection needs a comment
    instance = reports.complete(review["id"], "dana", {"approved": False, "comment": "SSO is late: AMBER"})
    gather = only_task(instance)
    assert gather["element_id"] == "gather"  # rework
    assert smtp.envelopes == []

    instance = reports.complete(gather["id"], "pat", STATUS)
    instance = reports.complete(only_task(instance)["id"], "dana", {"approved": True})
    assert instance["tasks"] == []  # waiting for the notify job
    assert jobs.run_due(reports) == 1
    [envelope] = smtp.envelopes
    assert envelope.rcpt_tos == ["casey@acme.example"]
    mail, body = read_mail(envelope)
    assert mail["Subject"] == "[AMBER] Status report: Apollo"
    assert "Overall status: AMBER" in body and "On track, except single sign-on." in body
    assert "Completed:\n  - Login page\n  - Password reset\n" in body
    assert "  - SSO vendor late\n" in body and "  - Flaky staging database\n" in body
    assert "Next steps:\n  - Single sign-on\n" in body
    after = reports.get_instance(instance["id"])
    assert after["status"] == "completed"
    assert after["data"]["report_delivery"]["delivered"] is True


def test_a_scheduled_report_can_also_be_run_now_by_hand(reports):
    """A process that starts on a timer, started by hand, runs at once (the timer start event
    counts as fired) instead of waiting for the schedule."""
    instance = reports.start("status_report", {"project": "Apollo"}, actor="pat")
    task = only_task(instance)
    assert (task["element_id"], task["candidate_group"]) == ("gather", "project_manager")
    assert timers.waiting_timers(reports) == []
