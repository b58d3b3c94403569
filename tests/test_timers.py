"""Timers fire from the database's due times: intermediate and boundary timers, once each."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from engine import timers
from engine.background import BackgroundWorker
from tests.conftest import BPMN, OffsetClock, make_engine, only_task, race

FAST = {"cool_off": "PT0.2S", "warn_after": "PT0.3S", "breach_after": "PT1H"}


@pytest.fixture
def sla(team):
    team.deploy([BPMN / "sla.bpmn"])
    return team


def wait_until_due(engine, instance_id: int) -> None:
    due = datetime.fromisoformat(
        next(t["due_at"] for t in timers.waiting_timers(engine) if t["instance_id"] == instance_id)
    )
    time.sleep(max(0.0, (due - engine.clock()).total_seconds()) + 0.05)


def test_intermediate_timer_waits_then_opens_the_task(sla):
    instance = sla.start("sla", dict(FAST))
    assert instance["status"] == "waiting" and instance["tasks"] == []
    assert timers.fire_due(sla) == 0  # not due yet: nothing happens
    wait_until_due(sla, instance["id"])
    assert timers.fire_due(sla) == 1
    after = sla.get_instance(instance["id"])
    assert only_task(after)["element_id"] == "resolve"
    assert after["status"] == "running"


def test_non_interrupting_boundary_timer_escalates_and_keeps_the_task(sla):
    instance = sla.start("sla", dict(FAST))
    wait_until_due(sla, instance["id"])
    timers.fire_due(sla)
    wait_until_due(sla, instance["id"])
    timers.fire_due(sla)
    open_tasks = {t["element_id"]: t for t in sla.get_instance(instance["id"])["tasks"]}
    assert set(open_tasks) == {"resolve", "escalation"}
    assert open_tasks["escalation"]["candidate_group"] == "delivery_manager"
    # resolving the original task still works and the escalation stays with the manager
    after = sla.complete(open_tasks["resolve"]["id"], "eli", {})
    assert [t["element_id"] for t in after["tasks"]] == ["escalation"]


def test_interrupting_boundary_timer_cancels_the_task(sla):
    instance = sla.start("sla", {"cool_off": "PT0S", "warn_after": "PT1H", "breach_after": "PT0.3S"})
    task = only_task(sla.get_instance(instance["id"]))
    wait_until_due(sla, instance["id"])
    timers.fire_due(sla)
    after = sla.get_instance(instance["id"])
    assert only_task(after)["element_id"] == "take_over"
    assert sla.get_task(task["id"])["status"] == "cancelled"
    assert "task_cancelled" in [e["type"] for e in sla.history(instance["id"])]


def test_two_schedulers_firing_together_fire_each_timer_once(sla, database_url):
    started = [sla.start("sla", dict(FAST))["id"] for _ in range(5)]
    for instance_id in started:
        wait_until_due(sla, instance_id)
    results = race(database_url, [(), ()], timers.fire_due)
    assert [outcome for outcome, _ in results] == ["ok", "ok"]
    for instance_id in started:
        created = [e for e in sla.history(instance_id) if e["type"] == "task_created"]
        assert [e["element_id"] for e in created] == ["resolve"]


def test_scheduler_fires_100_timers_once_each(sla, database_url):
    """100 instances with 1-2 s timers: all fire, none twice, each within about a second."""
    started = []
    for n in range(100):
        delay = 1 + (n % 10) / 10
        started.append(sla.start("sla", {"cool_off": f"PT{delay}S", "warn_after": "PT1H", "breach_after": "PT2H"}))
    scheduler = BackgroundWorker(make_engine(database_url), max_sleep=0.2)
    thread = scheduler.start_thread()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            if all(sla.get_instance(i["id"])["tasks"] for i in started):
                break
            time.sleep(0.2)
    finally:
        scheduler.stop()
        thread.join(10)
        scheduler.engine.close()
    for instance in started:
        history = sla.history(instance["id"])
        created = [e for e in history if e["type"] == "task_created"]
        assert [e["element_id"] for e in created] == ["resolve"], instance["id"]
        started_at = datetime.fromisoformat(history[0]["at"])
        opened_at = datetime.fromisoformat(created[0]["at"])
        delay = float(instance["data"]["cool_off"][2:-1])
        assert 0 <= (opened_at - started_at).total_seconds() - delay < 1.5


def test_timers_follow_the_engine_clock_not_the_wall_clock(sla):
    """Skipping the engine's clock ahead fires day-long timers at once, and only when due."""
    clock = sla.clock = OffsetClock()
    instance = sla.start("sla", {"cool_off": "P1D", "warn_after": "P2D", "breach_after": "P5D"})
    due = datetime.fromisoformat(timers.waiting_timers(sla)[0]["due_at"])
    assert abs((due - clock()).total_seconds() - 86400) < 60  # one day from the engine's now
    clock.advance(hours=23)
    assert timers.fire_due(sla) == 0
    clock.advance(hours=1, seconds=1)
    assert timers.fire_due(sla) == 1
    assert only_task(sla.get_instance(instance["id"]))["element_id"] == "resolve"
    clock.advance(days=2, seconds=1)  # warn_after (non-interrupting) is due, breach_after not yet
    assert timers.fire_due(sla) == 1
    tasks = {t["element_id"] for t in sla.get_instance(instance["id"])["tasks"]}
    assert tasks == {"resolve", "escalation"}
    clock.advance(days=3)
    assert timers.fire_due(sla) == 1  # the interrupting breach timer cancels the work
    assert "resolve" not in {t["element_id"] for t in sla.get_instance(instance["id"])["tasks"]}


@pytest.mark.parametrize(
    ("bad", "element", "expression", "fix"),
    [
        ({"cool_off": "later"}, "cool_off", "cool_off", {"cool_off": "PT1H"}),  # intermediate timer
        ({"cool_off": "PT0S", "warn_after": "soon"}, "sla_warning", "warn_after", {"warn_after": "PT1H"}),  # boundary
    ],
)
def test_a_timer_value_that_is_not_a_duration_is_an_incident_and_retry_arms_the_timer(
    sla, bad, element, expression, fix
):
    clock = sla.clock = OffsetClock()
    instance = sla.start("sla", {**FAST, "breach_after": "P1D", **bad})
    assert instance["status"] == "error"
    [incident] = instance["incidents"]
    assert (incident["element_id"], incident["message"]) == (element, f"timer {expression!r}: Invalid duration")
    assert "escalation" not in [t["element_id"] for t in instance["tasks"]]  # nothing fired by mistake

    after = sla.retry_incident(incident["id"], "dana", fix)
    assert after["status"] in ("running", "waiting") and after["incidents"] == []
    assert "escalation" not in [t["element_id"] for t in after["tasks"]]
    due = datetime.fromisoformat(
        next(t["due_at"] for t in timers.waiting_timers(sla) if t["instance_id"] == instance["id"])
    )
    assert abs((due - clock()).total_seconds() - 3600) < 60  # armed for one hour from now
    clock.advance(hours=1, seconds=1)
    assert timers.fire_due(sla) == 1
    opened = {t["element_id"] for t in sla.get_instance(instance["id"])["tasks"]}
    assert opened == ({"resolve"} if element == "cool_off" else {"resolve", "escalation"})


def test_a_timer_expression_that_fails_is_an_incident_and_retry_with_the_value_arms_it(team, tmp_path):
    text = (BPMN / "sla.bpmn").read_text()
    text = text.replace("<bpmn:timeDuration>cool_off</bpmn:timeDuration>", "<bpmn:timeDate>deadline</bpmn:timeDate>")
    (tmp_path / "sla.bpmn").write_text(text)
    team.deploy([tmp_path / "sla.bpmn"])
    instance = team.start("sla", {"warn_after": "PT1H", "breach_after": "PT2H"})
    [incident] = instance["incidents"]
    assert incident["element_id"] == "cool_off"
    assert incident["message"] == "timer 'deadline': NameError: name 'deadline' is not defined"
    after = team.retry_incident(incident["id"], "dana", {"deadline": "2030-01-02T03:04:05+00:00"})
    assert after["status"] == "waiting" and after["incidents"] == []
    assert [t["due_at"] for t in timers.waiting_timers(team)] == ["2030-01-02T03:04:05+00:00"]
