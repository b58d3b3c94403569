"""Timer start events: a deployed process starts itself on its schedule, once per occurrence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine import start_timers, timers
from engine.background import BackgroundWorker
from engine.errors import DefinitionInvalid
from tests.conftest import BPMN, only_task, race
from tests.conftest import OffsetClock as Clock
from tests.processes import HEADER


def timer_start(pid: str, kind: str | None, value: str = "", task: str = "report") -> str:
    """start (with a timer of ``kind``, or none) -> user task ``task`` (project_manager) -> end."""
    timer = (
        f"<bpmn:timerEventDefinition id='{pid}_timer'><bpmn:{kind}>{value}</bpmn:{kind}></bpmn:timerEventDefinition>"
    )
    return (
        HEADER.format(pid=pid)
        + f'''  <bpmn:process id="{pid}" isExecutable="true">
    <bpmn:laneSet id="lanes"><bpmn:lane id="lane_pm" name="project_manager">
      <bpmn:flowNodeRef>{task}</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing>
      {timer if kind else ""}
    </bpmn:startEvent>
    <bpmn:userTask id="{task}" name="Report">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="{task}" />
    <bpmn:sequenceFlow id="f2" sourceRef="{task}" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
'''
    )


@pytest.fixture
def clock(team):
    team.clock = Clock()
    return team.clock


def deploy(engine, tmp_path, kind: str | None, value: str = "", task: str = "report") -> None:
    path = tmp_path / "report.bpmn"
    path.write_text(timer_start("weekly", kind, value, task))
    engine.deploy([path])


def schedule(engine) -> dict | None:
    found = [s for s in start_timers.list_schedules(engine) if s["process_id"] == "weekly"]
    return found[0] if found else None


def due(engine) -> datetime:
    return datetime.fromisoformat(schedule(engine)["next_due"])


def started(engine) -> list[dict]:
    return engine.list_instances(process_id="weekly")


def test_an_hourly_cycle_starts_one_instance_each_hour(team, clock, tmp_path):
    deploy(team, tmp_path, "timeCycle", '"R/PT1H"')
    first = due(team)
    assert timedelta(minutes=59) < first - clock() < timedelta(hours=1)
    assert started(team) == []
    assert start_timers.fire_due(team) == 0  # not due yet

    clock.advance(hours=1)
    assert start_timers.fire_due(team) == 1
    assert start_timers.fire_due(team) == 0  # the occurrence is used up
    [summary] = started(team)
    instance = team.get_instance(summary["id"])
    assert instance["status"] == "running" and instance["started_by"] == "engine"
    assert only_task(instance)["element_id"] == "report"  # ran past its start event at once
    assert timers.waiting_timers(team) == []  # nothing waits at the start timer inside the instance
    start_event = team.history(instance["id"])[0]
    assert start_event["type"] == "instance_started" and start_event["actor"] == "engine"
    assert start_event["data"]["trigger"] == "timer"
    assert due(team) == first + timedelta(hours=1)
    assert start_timers.next_due(team) == first + timedelta(hours=1)


def test_after_downtime_one_instance_starts_not_one_per_missed_hour(team, clock, tmp_path):
    deploy(team, tmp_path, "timeCycle", '"R/PT1H"')
    first = due(team)
    clock.advance(hours=5, minutes=30)  # five occurrences passed while nothing ran
    assert start_timers.fire_due(team) == 1
    assert start_timers.fire_due(team) == 0
    assert len(started(team)) == 1
    assert due(team) == first + timedelta(hours=5)  # the first occurrence still in the future
    assert due(team) > clock()


def test_a_bounded_cycle_stops_after_its_repetitions(team, clock, tmp_path):
    deploy(team, tmp_path, "timeCycle", '"R2/PT1H"')
    assert schedule(team)["remaining"] == 2
    for _ in range(3):
        clock.advance(hours=1)
        start_timers.fire_due(team)
    assert len(started(team)) == 2
    assert schedule(team) is None


def test_a_cycle_with_a_start_date_fires_from_that_date(team, clock, tmp_path):
    deploy(team, tmp_path, "timeCycle", '"R/2030-01-01T09:00:00+00:00/P7D"')
    assert due(team) == datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert schedule(team)["interval_seconds"] == 7 * 24 * 3600


def test_a_date_in_the_past_fires_once_then_the_schedule_is_gone(team, clock, tmp_path):
    deploy(team, tmp_path, "timeDate", '"2020-01-01T09:00:00+00:00"')
    assert schedule(team)["interval_seconds"] is None
    assert start_timers.fire_due(team) == 1
    assert schedule(team) is None
    clock.advance(days=1)
    assert start_timers.fire_due(team) == 0
    assert len(started(team)) == 1


def test_a_duration_fires_once_that_long_after_the_deploy(team, clock, tmp_path):
    deploy(team, tmp_path, "timeDuration", '"PT10M"')
    assert timedelta(minutes=9) < due(team) - clock() < timedelta(minutes=10)
    clock.advance(minutes=10)
    assert start_timers.fire_due(team) == 1
    assert schedule(team) is None


def test_redeploys_keep_an_unchanged_schedule_start_the_newest_version_and_drop_a_removed_timer(team, clock, tmp_path):
    deploy(team, tmp_path, "timeCycle", '"R/PT1H"')
    first = due(team)
    clock.advance(minutes=30)
    deploy(team, tmp_path, "timeCycle", '"R/PT1H"', task="summary")  # version 2, same schedule
    assert due(team) == first
    clock.advance(minutes=30)
    assert start_timers.fire_due(team) == 1
    instance = team.get_instance(started(team)[0]["id"])
    assert instance["version"] == 2 and only_task(instance)["element_id"] == "summary"

    deploy(team, tmp_path, "timeCycle", '"R/PT2H"')  # version 3, a new schedule from the deploy's (engine) time
    assert timedelta(hours=1, minutes=59) < due(team) - clock() < timedelta(hours=2)
    deploy(team, tmp_path, None)  # version 4 starts by hand only
    assert schedule(team) is None and start_timers.next_due(team) is None
    clock.advance(days=1)
    assert start_timers.fire_due(team) == 0


def test_a_timer_expression_that_is_not_a_literal_is_refused_at_deploy(team, tmp_path):
    path = tmp_path / "report.bpmn"
    path.write_text(timer_start("weekly", "timeCycle", "schedule_from_data"))
    with pytest.raises(DefinitionInvalid) as info:
        team.deploy([path])
    text = str(info.value)
    assert "report.bpmn:7: start:" in text and "quoted ISO 8601 literal" in text
    assert team.list_definitions() == []  # the deploy stored nothing

    path.write_text(timer_start("weekly", "timeCycle", '"every hour"'))
    with pytest.raises(DefinitionInvalid) as info:
        team.deploy([path])
    assert "report.bpmn:7: start:" in str(info.value) and "repeating interval" in str(info.value)


def test_two_workers_firing_together_start_one_instance_per_occurrence(team, clock, tmp_path, database_url):
    deploy(team, tmp_path, "timeCycle", '"R/PT1H"')
    clock.advance(hours=1)

    def fire(eng):
        eng.clock = clock
        return start_timers.fire_due(eng)

    results = race(database_url, [(), ()], fire)
    assert sorted(results) == [("ok", 0), ("ok", 1)]
    assert len(started(team)) == 1


def test_the_background_worker_fires_start_timers(team, clock, tmp_path):
    deploy(team, tmp_path, "timeCycle", '"R/PT1H"')
    worker = BackgroundWorker(team, max_sleep=5)
    assert 0 < worker._sleep_time() <= 5
    clock.advance(hours=1)
    assert worker._sleep_time() == 0.0
    assert worker.run_once() == 1 and worker.timers_fired == 1
    assert len(started(team)) == 1


def test_a_process_with_a_plain_and_a_timer_start_starts_either_way(team, clock):
    """By hand it runs from the plain start event (the timer start is not waited on in that
    instance); on schedule it runs from the timer start event only."""
    team.deploy([BPMN / "two_starts.bpmn"])
    by_hand = team.start("both", {}, actor="pat")
    assert [t["element_id"] for t in by_hand["tasks"]] == ["work"] and by_hand["status"] == "running"
    assert timers.waiting_timers(team) == []
    clock.advance(days=91, seconds=1)
    assert start_timers.fire_due(team) == 1
    [scheduled] = [i for i in team.list_instances(process_id="both") if i["id"] != by_hand["id"]]
    assert [t["element_id"] for t in team.get_instance(scheduled["id"])["tasks"]] == ["prepare"]
    assert start_timers.fire_due(team) == 0  # once per occurrence
