"""The shipped deliverable approval process (processes/deliverable_approval.bpmn).

An engineer submits, QA reviews against the checklist, the client approves; a rejection at
either step loops back for rework. While the client's approval is open, two non-interrupting
timers count business days (plugins.calendar): a reminder email to the client after
``reminder_business_days`` (2) and a task for the delivery manager after
``escalation_business_days`` (5). The clock is fixed to known weekdays so "two business days"
has one right answer; emails go to a real SMTP server on loopback (aiosmtpd).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine import jobs, timers
from engine.errors import FormValidationError
from tests.conftest import only_task, open_tasks, read_mail

PROCESSES = Path(__file__).resolve().parent.parent / "processes"
THURSDAY = datetime(2030, 1, 3, 10, 0, tzinfo=UTC)  # 2030-01-03 is a Thursday
START = {"deliverable": "Design doc", "client_email": "casey@acme.example"}
SUBMISSION = {"summary": "Design doc v1", "link": "https://docs.example/design", "hours": 12}
CHECKLIST_OK = {
    "content_quality": True,
    "technical_accuracy": True,
    "client_requirements": True,
    "best_practices": True,
    "qa_approved": True,
}


class FixedClock:
    """A clock that stands still at a chosen moment until the test moves it."""

    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def set(self, moment: datetime) -> None:
        self.moment = moment

    def advance(self, **delta) -> None:
        self.moment += timedelta(**delta)


@pytest.fixture
def approvals(team):
    team.clock = FixedClock(THURSDAY)
    team.deploy([PROCESSES / "deliverable_approval.bpmn"])
    return team


# -- helpers ---------------------------------------------------------------------------------------


def step(engine, instance: dict, element_id: str, actor: str, data: dict) -> dict:
    """Complete the open task ``element_id`` (checking it is there) and return the instance."""
    task = open_tasks(instance)[element_id]
    return engine.complete(task["id"], actor, data)


def to_client(engine, data: dict | None = None) -> dict:
    """Start with ``data`` and go through submission and QA approval: client_approval is open."""
    instance = engine.start("deliverable_approval", dict(START if data is None else data), actor="pat")
    instance = step(engine, instance, "submit", "eli", SUBMISSION)
    instance = step(engine, instance, "qa_review", "quinn", CHECKLIST_OK)
    assert list(open_tasks(instance)) == ["client_approval"]
    return instance


def qa_reject(engine, instance: dict, comment: str) -> dict:
    return step(
        engine,
        instance,
        "qa_review",
        "quinn",
        dict(CHECKLIST_OK, technical_accuracy=False, qa_approved=False, qa_comment=comment),
    )


def completions(engine, instance_id: int, element_id: str) -> list[dict]:
    """The data submitted each time ``element_id`` was completed, oldest first (the audit log)."""
    events = engine.history(instance_id)
    return [e["data"]["data"] for e in events if e["type"] == "task_completed" and e["element_id"] == element_id]


def route(engine, instance_id: int) -> list[str]:
    """Every element the instance passed through, in order (tasks, gateways, events)."""
    kinds = ("task_completed", "activity_completed", "gateway_decision")
    return [e["element_id"] for e in engine.history(instance_id) if e["type"] in kinds]


def due_times(engine) -> list[datetime]:
    return [datetime.fromisoformat(t["due_at"]) for t in timers.waiting_timers(engine)]


def fire_at(engine, moment: datetime) -> int:
    engine.clock.set(moment)
    return timers.fire_due(engine)


# -- the main path ---------------------------------------------------------------------------------
def test_happy_path_goes_through_each_group_once_and_ends_accepted(approvals, smtp):
    instance = approvals.start("deliverable_approval", dict(START), actor="pat")
    submit = only_task(instance)
    assert (submit["element_id"], submit["candidate_group"]) == ("submit", "engineer")
    instance = approvals.complete(submit["id"], "eli", SUBMISSION)
    qa = only_task(instance)
    assert (qa["element_id"], qa["candidate_group"], qa["title"]) == ("qa_review", "qa_reviewer", "QA review")
    instance = approvals.complete(qa["id"], "quinn", CHECKLIST_OK)
    client = only_task(instance)
    assert (client["element_id"], client["candidate_group"]) == ("client_approval", "client")
    approvals.clock.advance(days=1)  # Friday: the client answers in time
    done = approvals.complete(client["id"], "casey", {"client_accepted": True, "client_comment": "Looks great"})

    assert done["status"] == "completed" and done["tasks"] == []
    happy_path = "start open_review submit qa_review gw_qa client_approval gw_client end_accepted"
    assert route(approvals, done["id"]) == happy_path.split()
    decisions = {
        e["element_id"]: e["data"]["taken"] for e in approvals.history(done["id"]) if e["type"] == "gateway_decision"
    }
    assert decisions == {"gw_qa": ["client_approval"], "gw_client": ["end_accepted"]}  # with boundary timers too
    data = done["data"]
    assert data["rework_rounds"] == 0
    assert (data["reminder_business_days"], data["escalation_business_days"]) == (2, 5)  # the defaults
    assert {k: data[k] for k in CHECKLIST_OK} == CHECKLIST_OK
    assert (data["client_accepted"], data["client_comment"]) == (True, "Looks great")
    assert "escalated" not in data
    # answered in time: the timers went with the task, nothing fires later, nobody is emailed
    assert timers.waiting_timers(approvals) == []
    assert fire_at(approvals, THURSDAY + timedelta(days=30)) == 0
    assert jobs.run_due(approvals) == 0 and smtp.envelopes == []
    assert approvals.list_tasks(candidate_group="delivery_manager") == []


def test_the_checklist_and_the_client_form_require_a_comment_on_rejection(approvals):
    instance = approvals.start("deliverable_approval", dict(START), actor="pat")
    instance = step(approvals, instance, "submit", "eli", SUBMISSION)
    qa = only_task(instance)
    with pytest.raises(FormValidationError):
        approvals.complete(qa["id"], "quinn", {"qa_approved": True})  # the four checklist items are required
    with pytest.raises(FormValidationError):
        approvals.complete(qa["id"], "quinn", dict(CHECKLIST_OK, qa_approved=False))  # rejected without a comment
    instance = approvals.complete(qa["id"], "quinn", CHECKLIST_OK)
    client = only_task(instance)
    with pytest.raises(FormValidationError):
        approvals.complete(client["id"], "casey", {"client_accepted": False})
    assert approvals.get_task(client["id"])["status"] != "completed"


# -- rework loops ----------------------------------------------------------------------------------
def test_qa_rejections_loop_back_to_the_engineer_as_often_as_needed(approvals):
    instance = approvals.start("deliverable_approval", dict(START), actor="pat")
    comments = [f"Round {n}: the sizing section is wrong" for n in range(1, 5)]
    for n, comment in enumerate(comments, start=1):
        instance = step(approvals, instance, "submit", "eli", dict(SUBMISSION, summary=f"Design doc v{n}"))
        instance = qa_reject(approvals, instance, comment)
        back = only_task(instance)
        assert (back["element_id"], back["candidate_group"]) == ("submit", "engineer")
        assert instance["data"]["rework_rounds"] == n
    instance = step(approvals, instance, "submit", "eli", dict(SUBMISSION, summary="Design doc v5"))
    instance = step(approvals, instance, "qa_review", "quinn", CHECKLIST_OK)
    done = step(approvals, instance, "client_approval", "casey", {"client_accepted": True})

    assert done["status"] == "completed" and done["data"]["rework_rounds"] == 4
    assert done["data"]["summary"] == "Design doc v5"
    assert route(approvals, done["id"]).count("record_rework") == 4
    # every decision is in the audit log with its comment, in order
    reviews = completions(approvals, done["id"], "qa_review")
    assert [r["qa_approved"] for r in reviews] == [False] * 4 + [True]
    assert [r.get("qa_comment") for r in reviews] == [*comments, None]
    assert [r["technical_accuracy"] for r in reviews] == [False] * 4 + [True]
    summaries = [s["summary"] for s in completions(approvals, done["id"], "submit")]
    assert summaries == [f"Design doc v{n}" for n in range(1, 6)]


def test_client_rejections_loop_back_through_qa(approvals):
    instance = to_client(approvals)
    comments = ["Add the migration plan", "Costs per phase, please", "Name the owners"]
    for n, comment in enumerate(comments, start=1):
        instance = step(
            approvals, instance, "client_approval", "casey", {"client_accepted": False, "client_comment": comment}
        )
        assert list(open_tasks(instance)) == ["submit"] and instance["data"]["rework_rounds"] == n
        instance = step(approvals, instance, "submit", "eli", dict(SUBMISSION, summary=f"Design doc v{n + 1}"))
        instance = step(approvals, instance, "qa_review", "quinn", CHECKLIST_OK)
        assert open_tasks(instance)["client_approval"]["candidate_group"] == "client"
    done = step(approvals, instance, "client_approval", "casey", {"client_accepted": True, "client_comment": "Thanks"})

    assert done["status"] == "completed" and done["data"]["rework_rounds"] == 3
    decisions = completions(approvals, done["id"], "client_approval")
    assert [(d["client_accepted"], d["client_comment"]) for d in decisions] == [
        *((False, c) for c in comments),
        (True, "Thanks"),
    ]
    taken = [e["data"]["taken"] for e in approvals.history(done["id"]) if e["element_id"] == "gw_client"]
    assert taken == [["gw_rework"]] * 3 + [["end_accepted"]]


def test_a_long_rework_loop_does_not_stall(approvals):
    """SpiffWorkflow alone stalls a gateway loop after a few hundred tasks (its iterator's
    depth limit); 200 rounds of six or more steps each go far past that."""
    engine = approvals
    instance = engine.start("deliverable_approval", dict(START), actor="pat")
    rounds = 200
    for n in range(rounds):
        instance = step(engine, instance, "submit", "eli", SUBMISSION)
        if n % 2:
            instance = qa_reject(engine, instance, f"round {n}")
        else:
            instance = step(engine, instance, "qa_review", "quinn", CHECKLIST_OK)
            instance = step(
                engine, instance, "client_approval", "casey", {"client_accepted": False, "client_comment": f"round {n}"}
            )
        assert list(open_tasks(instance)) == ["submit"], n
    instance = step(engine, instance, "submit", "eli", SUBMISSION)
    instance = step(engine, instance, "qa_review", "quinn", CHECKLIST_OK)
    done = step(engine, instance, "client_approval", "casey", {"client_accepted": True})
    assert done["status"] == "completed" and done["data"]["rework_rounds"] == rounds


# -- the reminder ----------------------------------------------------------------------------------
def test_the_reminder_is_emailed_after_two_business_days_and_not_before(approvals, smtp):
    instance = to_client(approvals)  # opened Thursday 10:00
    client = only_task(instance)
    monday = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)
    assert min(due_times(approvals)) == monday  # Friday and Monday; the weekend does not count
    for moment in (THURSDAY + timedelta(days=2), monday - timedelta(seconds=1)):  # Saturday, Monday 9:59
        assert fire_at(approvals, moment) == 0
        assert jobs.run_due(approvals) == 0
    assert smtp.envelopes == []

    assert fire_at(approvals, monday + timedelta(seconds=1)) == 1
    assert jobs.run_due(approvals) == 1  # the notify job
    [envelope] = smtp.envelopes
    assert envelope.rcpt_tos == ["casey@acme.example"]
    mail, body = read_mail(envelope)
    assert mail["Subject"] == "Reminder: Design doc v1 is waiting for your approval"
    assert "2 business days ago" in body and "https://docs.example/design" in body
    assert "by 2030-01-10" in body  # three business days after Monday: the escalation day

    after = approvals.get_instance(instance["id"])
    assert after["status"] == "running"
    assert only_task(after)["id"] == client["id"]  # still the same open task
    assert after["data"]["reminder_delivery"]["delivered"] is True
    assert route(approvals, instance["id"])[-4:] == ["reminder_due", "gw_client_email", "send_reminder", "end_reminded"]
    # one reminder per round: what is left is the escalation
    assert due_times(approvals) == [datetime(2030, 1, 10, 10, 0, tzinfo=UTC)]
    done = approvals.complete(client["id"], "casey", {"client_accepted": True})
    assert done["status"] == "completed" and len(smtp.envelopes) == 1


def test_holidays_and_the_start_data_move_the_timers(approvals, monkeypatch):
    monkeypatch.setenv("SDF_HOLIDAYS", "2030-01-04,2030-01-07")  # Friday and Monday off
    to_client(approvals, dict(START, reminder_business_days=1, escalation_business_days=3))
    # from Thursday: Tuesday is the first business day, Thursday the third
    assert due_times(approvals) == [datetime(2030, 1, 8, 10, 0, tzinfo=UTC)]
    assert fire_at(approvals, datetime(2030, 1, 8, 9, 59, tzinfo=UTC)) == 0
    assert fire_at(approvals, datetime(2030, 1, 8, 10, 1, tzinfo=UTC)) == 1
    assert due_times(approvals) == [datetime(2030, 1, 10, 10, 0, tzinfo=UTC)]


def test_without_a_client_email_the_reminder_is_skipped(approvals, smtp):
    instance = to_client(approvals, {"deliverable": "Design doc"})
    assert instance["data"]["client_email"] is None  # set by open_review
    assert fire_at(approvals, datetime(2030, 1, 7, 10, 1, tzinfo=UTC)) == 1
    assert jobs.run_due(approvals) == 0 and smtp.envelopes == []
    assert route(approvals, instance["id"])[-3:] == ["reminder_due", "gw_client_email", "end_no_email"]
    assert approvals.get_instance(instance["id"])["status"] == "running"


# -- the escalation --------------------------------------------------------------------------------
def escalate(engine, smtp) -> tuple[dict, dict]:
    """Reach client approval on Thursday and let a week go by: returns (instance, client task)."""
    instance = to_client(engine)
    client = only_task(instance)
    assert fire_at(engine, datetime(2030, 1, 7, 10, 1, tzinfo=UTC)) == 1  # the reminder, Monday
    assert jobs.run_due(engine) == 1 and len(smtp.envelopes) == 1
    assert fire_at(engine, datetime(2030, 1, 10, 9, 59, tzinfo=UTC)) == 0  # Thursday, one minute early
    assert engine.list_tasks(candidate_group="delivery_manager") == []
    assert fire_at(engine, datetime(2030, 1, 10, 10, 1, tzinfo=UTC)) == 1
    return engine.get_instance(instance["id"]), client


def test_after_five_business_days_the_delivery_manager_is_asked_to_step_in(approvals, smtp):
    instance, client = escalate(approvals, smtp)
    tasks = open_tasks(instance)
    assert set(tasks) == {"client_approval", "handle_escalation"}
    assert tasks["client_approval"]["id"] == client["id"]  # the client's task stays open
    escalation = tasks["handle_escalation"]
    assert (escalation["candidate_group"], escalation["title"]) == ("delivery_manager", "Chase overdue approval")
    assert [t["id"] for t in approvals.list_tasks(candidate_group="delivery_manager")] == [escalation["id"]]
    assert instance["data"]["escalated"] is True
    assert instance["data"]["escalated_at"] == "2030-01-10T10:01:00+00:00"
    assert timers.waiting_timers(approvals) == []  # each timer fires once per round
    assert len(smtp.envelopes) == 1  # the escalation is a task, not a second email to the client

    with pytest.raises(FormValidationError):
        approvals.complete(escalation["id"], "dana", {"escalation_action": "shouted"})
    action = {
        "escalation_action": "new_date_agreed",
        "escalation_comment": "Sponsor back Monday",
        "new_approval_date": "2030-01-14",
    }
    handled = approvals.complete(escalation["id"], "dana", action)
    assert handled["status"] == "running" and only_task(handled)["id"] == client["id"]
    # the client answers later: the main path goes on as usual
    approvals.clock.advance(days=4)
    done = approvals.complete(
        client["id"], "casey", {"client_accepted": True, "client_comment": "Approved, sorry for the delay"}
    )
    assert done["status"] == "completed" and done["tasks"] == []
    assert route(approvals, done["id"])[-3:] == ["client_approval", "gw_client", "end_accepted"]
    assert completions(approvals, done["id"], "handle_escalation") == [action]


def test_a_client_answer_after_the_escalation_leaves_the_manager_to_close_it(approvals, smtp):
    instance, client = escalate(approvals, smtp)
    escalation = open_tasks(instance)["handle_escalation"]
    after = approvals.complete(client["id"], "casey", {"client_accepted": True, "client_comment": "Fine by us"})
    assert "end_accepted" in route(approvals, instance["id"])
    assert after["status"] == "running" and only_task(after)["id"] == escalation["id"]
    done = approvals.complete(
        escalation["id"], "dana", {"escalation_action": "other", "escalation_comment": "Answered meanwhile"}
    )
    assert done["status"] == "completed" and done["tasks"] == []
    decisions = {e: completions(approvals, done["id"], e) for e in ("client_approval", "handle_escalation")}
    assert decisions["client_approval"] == [{"client_accepted": True, "client_comment": "Fine by us"}]
    assert decisions["handle_escalation"][0]["escalation_comment"] == "Answered meanwhile"


def test_each_rework_round_rearms_the_reminder_and_the_escalation(approvals, smtp):
    instance = to_client(approvals)  # round 1 opens Thursday 10:00
    assert fire_at(approvals, datetime(2030, 1, 7, 10, 1, tzinfo=UTC)) == 1  # its reminder, Monday
    assert jobs.run_due(approvals) == 1
    # Tuesday: the client asks for changes; the engineer and QA turn it around by noon
    approvals.clock.set(datetime(2030, 1, 8, 9, 0, tzinfo=UTC))
    instance = step(
        approvals,
        approvals.get_instance(instance["id"]),
        "client_approval",
        "casey",
        {"client_accepted": False, "client_comment": "Add the rollback plan"},
    )
    approvals.clock.set(datetime(2030, 1, 8, 12, 0, tzinfo=UTC))
    instance = step(approvals, instance, "submit", "eli", dict(SUBMISSION, summary="Design doc v2"))
    instance = step(approvals, instance, "qa_review", "quinn", CHECKLIST_OK)
    second = only_task(instance)
    assert second["element_id"] == "client_approval"
    # round 1's escalation (Thursday 10:00) is gone; round 2 counts from Tuesday noon
    assert due_times(approvals) == [datetime(2030, 1, 10, 12, 0, tzinfo=UTC)]
    assert fire_at(approvals, datetime(2030, 1, 10, 10, 1, tzinfo=UTC)) == 0
    assert approvals.list_tasks(candidate_group="delivery_manager") == []
    assert fire_at(approvals, datetime(2030, 1, 10, 12, 1, tzinfo=UTC)) == 1  # round 2's reminder
    assert jobs.run_due(approvals) == 1
    assert [read_mail(e)[0]["Subject"] for e in smtp.envelopes] == [
        "Reminder: Design doc v1 is waiting for your approval",
        "Reminder: Design doc v2 is waiting for your approval",
    ]
    assert due_times(approvals) == [datetime(2030, 1, 15, 12, 0, tzinfo=UTC)]  # five business days: Tuesday
    assert fire_at(approvals, datetime(2030, 1, 15, 12, 1, tzinfo=UTC)) == 1
    tasks = open_tasks(approvals.get_instance(instance["id"]))
    assert set(tasks) == {"client_approval", "handle_escalation"}
    assert tasks["client_approval"]["id"] == second["id"]
    reminders = [e for e in route(approvals, instance["id"]) if e in ("reminder_due", "escalation_due")]
    assert reminders == ["reminder_due", "reminder_due", "escalation_due"]
