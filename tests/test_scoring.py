"""Built-in scoring rules (plugins.scoring): each rule at its boundaries, its settings, its use
from BPMN scripts and gateways, and a third-party plugin overriding it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

import pytest

from engine.hookspecs import hookimpl
from engine.plugins import create_plugin_manager
from engine.runtime import Engine
from engine.settings import load_settings
from plugins import scoring
from tests import processes
from tests.conftest import only_task

NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)


# -- risk ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("probability", "impact", "score", "band"),
    [
        (1, 1, 1, "low"),
        (2, 2, 4, "low"),  # top of low
        (1, 5, 5, "medium"),  # bottom of medium
        (3, 3, 9, "medium"),
        (2, 5, 10, "high"),
        (4, 4, 16, "high"),  # top of high
        (4, 5, 20, "critical"),
        (5, 5, 25, "critical"),
    ],
)
def test_risk_is_probability_times_impact_banded(probability, impact, score, band):
    assert scoring.score_risk(probability, impact) == {"score": score, "band": band}


@pytest.mark.parametrize(
    ("score", "band"), [(4, "low"), (5, "medium"), (9, "medium"), (10, "high"), (16, "high"), (17, "critical")]
)
def test_default_band_boundaries(score, band):
    assert scoring.risk_band(score) == band


@pytest.mark.parametrize("bad", [0, 6, -1, True, 2.5, "3", None])
def test_risk_refuses_values_outside_1_to_5(bad):
    with pytest.raises(ValueError, match=r"probability must be a whole number from 1 to 5"):
        scoring.score_risk(bad, 3)
    with pytest.raises(ValueError, match=r"impact must be a whole number from 1 to 5"):
        scoring.score_risk(3, bad)


def test_risk_bands_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SDF_RISK_BANDS", " minor : 1-9 , major:10-25 ")
    assert scoring.score_risk(3, 3) == {"score": 9, "band": "minor"}
    assert scoring.score_risk(2, 5) == {"score": 10, "band": "major"}
    monkeypatch.setenv("SDF_RISK_BANDS", "")  # empty means the default
    assert scoring.score_risk(2, 5)["band"] == "high"


def test_risk_bands_are_parsed_once_per_value(monkeypatch):
    monkeypatch.setenv("SDF_RISK_BANDS", "low:1-12,high:13-25")
    scoring.score_risk(1, 1)
    hits = scoring._parse_risk_bands.cache_info().hits
    assert scoring.score_risk(3, 4)["band"] == "low"
    assert scoring._parse_risk_bands.cache_info().hits == hits + 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("low:1-4;medium:5-25", "needs a range like 1-4"),
        ("low 1-4,high:5-25", "is not name:value"),
        ("low:1-4,,high:5-25", "is not name:value"),
        ("low:one-four,high:5-25", "needs a range like 1-4"),
        ("low:4-1,high:5-25", "not within 1-25"),
        ("low:0-4,high:5-25", "not within 1-25"),
        ("low:1-4,high:5-26", "not within 1-25"),
        ("low:1-4,high:6-25", "leaves score 5 without a band"),
        ("low:1-5,high:5-25", "overlaps the previous band"),
        ("low:1-4,medium:5-9", "scores 10-25 has no band"),
        ("low:2-25", "leaves score 1 without a band"),
        ("low:1-4,low:5-25", "band 'low' is given twice"),
    ],
)
def test_malformed_risk_bands_are_a_clear_error(monkeypatch, value, problem):
    monkeypatch.setenv("SDF_RISK_BANDS", value)
    with pytest.raises(ValueError, match=r"SDF_RISK_BANDS=.* is malformed") as caught:
        scoring.score_risk(1, 1)
    assert problem in str(caught.value)
    assert "low:1-4,medium:5-9,high:10-16,critical:17-25" in str(caught.value)  # the example


# -- ITIL priority -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("impact", "urgency", "priority", "hours"),
    [
        ("high", "high", "P1", 4),
        ("high", "medium", "P2", 8),
        ("medium", "high", "P2", 8),
        ("high", "low", "P3", 24),
        ("medium", "medium", "P3", 24),
        ("low", "high", "P3", 24),
        ("medium", "low", "P4", 72),
        ("low", "medium", "P4", 72),
        ("low", "low", "P4", 72),
    ],
)
def test_every_itil_cell(impact, urgency, priority, hours):
    assert scoring.score_priority(impact, urgency) == {"priority": priority, "target_hours": hours}


def test_priority_levels_ignore_case_and_spaces():
    assert scoring.score_priority("HIGH", " Medium ") == {"priority": "P2", "target_hours": 8}


@pytest.mark.parametrize("bad", ["urgent", "", None, 1, "hi"])
def test_unknown_impact_or_urgency_is_refused(bad):
    with pytest.raises(ValueError, match=r"impact must be one of high, medium, low"):
        scoring.score_priority(bad, "low")
    with pytest.raises(ValueError, match=r"urgency must be one of high, medium, low"):
        scoring.score_priority("low", bad)


def test_target_hours_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SDF_PRIORITY_TARGET_HOURS", "p1:1, P2:2, P3:12, P4:48")
    assert scoring.score_priority("high", "high") == {"priority": "P1", "target_hours": 1}
    assert scoring.score_priority("low", "low") == {"priority": "P4", "target_hours": 48}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("P1:4,P2:8", "no hours for P3, P4"),
        ("P1:4,P2:8,P3:24,P4:72,P5:100", "unknown priority 'P5'"),
        ("P1:4,P1:5,P2:8,P3:24,P4:72", "P1 is given twice"),
        ("P1:0,P2:8,P3:24,P4:72", "P1 needs a positive whole number of hours"),
        ("P1:four,P2:8,P3:24,P4:72", "P1 needs a positive whole number of hours"),
        ("P1=4,P2:8,P3:24,P4:72", "is not name:value"),
    ],
)
def test_malformed_target_hours_are_a_clear_error(monkeypatch, value, problem):
    monkeypatch.setenv("SDF_PRIORITY_TARGET_HOURS", value)
    with pytest.raises(ValueError, match=r"SDF_PRIORITY_TARGET_HOURS=.* is malformed") as caught:
        scoring.score_priority("high", "high")
    assert problem in str(caught.value)


# -- task priority -------------------------------------------------------------------------------
def task(priority=50, due_at=None):
    return {"element_id": "t", "title": "T", "candidate_group": "g", "priority": priority, "due_at": due_at}


def due(delta: timedelta) -> str:
    return (NOW + delta).isoformat()


@pytest.mark.parametrize(
    ("the_task", "data", "expected"),
    [
        (task(), {}, 50),
        (task(priority=None), {}, 50),  # no BPMN priority: the default
        (task(70), {"client_tier": "platinum"}, 90),
        (task(70), {"client_tier": "Gold"}, 80),
        (task(70), {"client_tier": "silver"}, 70),
        (task(70), {"client_tier": 3}, 70),  # not a tier: ignored
        (task(due_at=due(timedelta(hours=23, minutes=59))), {}, 65),
        (task(due_at=due(timedelta(hours=24))), {}, 65),  # exactly 24 hours: within
        (task(due_at=due(timedelta(hours=24, seconds=1))), {}, 50),
        (task(due_at=due(timedelta(days=3))), {}, 50),
        (task(due_at=due(timedelta(0))), {}, 75),  # due now: already past
        (task(due_at=due(-timedelta(minutes=1))), {}, 75),
        (task(due_at=(NOW + timedelta(hours=2)).replace(tzinfo=None).isoformat()), {}, 65),  # naive = UTC
        (task(due_at="2024-06-03T13:00:00Z"), {}, 65),
        (task(), {"priority": "P1"}, 60),
        (task(), {"priority": "p2"}, 55),
        (task(), {"priority": "P3"}, 50),
        (task(), {"priority": {"priority": "P1", "target_hours": 4}}, 60),  # a stored score_priority result
        (task(), {"priority": 1}, 50),
        (task(40), {"client_tier": "gold", "priority": "P2"}, 55),
        (task(due_at=due(timedelta(hours=1))), {"client_tier": "platinum", "priority": "P1"}, 95),
        (task(90, due(-timedelta(hours=1))), {"client_tier": "platinum", "priority": "P1"}, 100),  # 145 clamped
        (task(-30), {"client_tier": "gold"}, 0),  # -20 clamped
        (task(200), {}, 100),
    ],
)
def test_task_priority_adjustments(the_task, data, expected):
    assert scoring.task_priority(the_task, data, NOW) == expected


def test_task_priority_hook_uses_the_current_time():
    overdue = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert scoring.score_task_priority(task(due_at=overdue), {"client_tier": "gold"}) == 85
    assert scoring.score_task_priority(task(), None) == 50


# -- satisfaction --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answers", "csat", "nps", "band"),
    [
        ({"nps": [10, 9, 8, 7, 6, 0]}, None, 0.0, "at_risk"),  # 2 promoters, 2 detractors
        ({"nps": [10, 10, 10, 8, 8, 8, 8, 8, 8, 8]}, None, 30.0, "healthy"),  # NPS 30: not at risk
        ({"nps": [9, 7]}, None, 50.0, "healthy"),  # 9 is a promoter, 7 a passive
        ({"nps": [7, 8]}, None, 0.0, "at_risk"),  # passives only
        ({"nps": [6, 7]}, None, -50.0, "critical"),  # 6 is a detractor
        ({"nps": [9, 9, 8, 8, 8, 8, 8, 8, 8, 6]}, None, 10.0, "at_risk"),
        ({"nps": [9, 0, 0]}, None, -33.3, "critical"),
        ({"nps": 10}, None, 100.0, "healthy"),
        ({"csat": [5, 4, 3, 2, 1]}, 40.0, None, "critical"),
        ({"csat": [5, 1]}, 50.0, None, "at_risk"),  # CSAT 50: at risk, not critical
        ({"csat": [4, 3]}, 50.0, None, "at_risk"),  # 4 counts as satisfied, 3 does not
        ({"csat": [5, 5, 1]}, 66.7, None, "at_risk"),
        ({"csat": [5, 5, 5, 1]}, 75.0, None, "healthy"),  # CSAT 75: healthy
        ({"csat": 4}, 100.0, None, "healthy"),
        ({"csat": (3,)}, 0.0, None, "critical"),
        ({"csat": [5, 5, 5, 4], "nps": [9, 10, 9, 8]}, 100.0, 75.0, "healthy"),
        ({"csat": [5, 5, 5, 4], "nps": [10, 0]}, 100.0, 0.0, "at_risk"),  # worst measure wins
        ({"csat": [1, 2], "nps": [10, 10]}, 0.0, 100.0, "critical"),
        ({"csat": [5], "nps": [], "comment": "great"}, 100.0, None, "healthy"),  # other keys ignored
    ],
)
def test_satisfaction_on_known_response_sets(answers, csat, nps, band):
    assert scoring.score_satisfaction(answers) == {"csat": csat, "nps": nps, "band": band}


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"csat": 0}, "csat responses must be whole numbers from 1 to 5, got 0"),
        ({"csat": [5, 6]}, "csat responses must be whole numbers from 1 to 5, got 6"),
        ({"csat": "5"}, "got '5'"),
        ({"csat": [4.0]}, "got 4.0"),
        ({"csat": True}, "got True"),
        ({"nps": [10, 11]}, "nps responses must be whole numbers from 0 to 10, got 11"),
        ({"nps": -1}, "got -1"),
        ({}, "needs at least one 'csat' (1-5) or 'nps' (0-10) response"),
        ({"csat": [], "nps": None}, "needs at least one"),
        ([5, 4], "needs a dict with 'csat' and/or 'nps', got list"),
    ],
)
def test_invalid_satisfaction_answers_are_refused(answers, message):
    with pytest.raises(ValueError) as caught:
        scoring.score_satisfaction(answers)
    assert message in str(caught.value)


# -- registration --------------------------------------------------------------------------------
def test_built_in_rules_are_trylast_so_installed_plugins_win():
    pm = create_plugin_manager(entry_points=False)
    for name in ("score_risk", "score_priority", "score_task_priority", "score_satisfaction"):
        [impl] = [i for i in getattr(pm.hook, name).get_hookimpls() if i.plugin_name == "plugins.scoring"]
        assert impl.trylast, name


def test_script_functions_ask_the_hook():
    functions = scoring.script_functions(create_plugin_manager(entry_points=False).hook)
    assert set(functions) == {"score_risk", "score_priority", "score_satisfaction"}
    assert functions["score_risk"](3, 4) == {"score": 12, "band": "high"}
    assert functions["score_priority"](impact="low", urgency="high") == {"priority": "P3", "target_hours": 24}
    assert functions["score_satisfaction"]({"csat": [5]}) == {"csat": 100.0, "nps": None, "band": "healthy"}


# -- through the engine --------------------------------------------------------------------------
ASSESS = "risk = score_risk(probability, impact)\nprio = score_priority(impact_level, urgency)\n"


def assessment(pid: str, script: str = ASSESS) -> str:
    """start -> script 'assess' -> gateway: high risk -> 'escalate' (delivery_manager, priority 60,
    due in 2 hours), anything else -> 'routine' (project_manager)."""
    return f'''<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="defs_{pid}" targetNamespace="https://sdf.example/tests">
  <bpmn:process id="{pid}" isExecutable="true">
    <bpmn:laneSet id="lanes">
      <bpmn:lane id="lane_dm" name="delivery_manager"><bpmn:flowNodeRef>escalate</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="lane_pm" name="project_manager"><bpmn:flowNodeRef>routine</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="assess" name="Assess"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{escape(script)}</bpmn:script></bpmn:scriptTask>
    <bpmn:exclusiveGateway id="gw_risk" default="f_routine">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f_high</bpmn:outgoing><bpmn:outgoing>f_routine</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:userTask id="escalate" name="Escalate">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="priority" value="60" />
        <spiffworkflow:property name="dueIn" value="PT2H" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f_high</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="routine" name="Routine">
      <bpmn:incoming>f_routine</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end_high"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_routine"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="assess" />
    <bpmn:sequenceFlow id="f2" sourceRef="assess" targetRef="gw_risk" />
    <bpmn:sequenceFlow id="f_high" sourceRef="gw_risk" targetRef="escalate">
      <bpmn:conditionExpression>risk['band'] == 'high'</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_routine" sourceRef="gw_risk" targetRef="routine" />
    <bpmn:sequenceFlow id="f3" sourceRef="escalate" targetRef="end_high" />
    <bpmn:sequenceFlow id="f4" sourceRef="routine" targetRef="end_routine" />
  </bpmn:process>
</bpmn:definitions>
'''


def deploy_assessment(engine, tmp_path, pid: str = "assessment", script: str = ASSESS) -> None:
    engine.deploy([processes.write(tmp_path, f"{pid}.bpmn", assessment(pid, script))])


CASE = {"probability": 4, "impact": 3, "impact_level": "High", "urgency": "medium"}


def test_script_scores_and_gateway_routes_high_risk(team, tmp_path):
    deploy_assessment(team, tmp_path)
    instance = team.start("assessment", CASE)
    assert instance["status"] == "running"
    assert instance["data"]["risk"] == {"score": 12, "band": "high"}
    assert instance["data"]["prio"] == {"priority": "P2", "target_hours": 8}
    escalation = only_task(instance)
    assert (escalation["element_id"], escalation["candidate_group"]) == ("escalate", "delivery_manager")
    assert escalation["priority"] == 75  # 60 from BPMN + 15: due within 24 hours
    done = team.complete(escalation["id"], "dana", {})
    assert done["status"] == "completed"


def test_gateway_takes_the_default_route_below_high(team, tmp_path):
    deploy_assessment(team, tmp_path)
    instance = team.start("assessment", {**CASE, "probability": 1, "impact": 2, "urgency": "LOW"})
    assert instance["data"]["risk"] == {"score": 2, "band": "low"}
    assert instance["data"]["prio"] == {"priority": "P3", "target_hours": 24}
    routine = only_task(instance)
    assert (routine["element_id"], routine["priority"]) == ("routine", 50)


def test_task_priority_reads_the_process_data(sqlite_engine, tmp_path):
    deploy_assessment(sqlite_engine, tmp_path)
    instance = sqlite_engine.start("assessment", {**CASE, "client_tier": "platinum", "priority": "P1"})
    assert only_task(instance)["priority"] == 100  # 60 + 20 + 15 + 10 = 105, clamped


def test_configured_bands_change_the_route(sqlite_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("SDF_RISK_BANDS", "low:1-12,high:13-25")
    deploy_assessment(sqlite_engine, tmp_path)
    instance = sqlite_engine.start("assessment", CASE)
    assert instance["data"]["risk"] == {"score": 12, "band": "low"}
    assert only_task(instance)["element_id"] == "routine"


def test_invalid_input_in_a_script_is_an_incident_with_the_reason(sqlite_engine, tmp_path):
    deploy_assessment(sqlite_engine, tmp_path)
    instance = sqlite_engine.start("assessment", {**CASE, "probability": 6})
    assert instance["status"] == "error"
    [incident] = instance["incidents"]
    assert incident["element_id"] == "assess"
    assert "probability must be a whole number from 1 to 5, got 6" in incident["message"]


def test_satisfaction_from_a_script(sqlite_engine, tmp_path):
    script = "survey = score_satisfaction({'csat': csat, 'nps': nps})\nrisk = {'band': 'low'}\n"
    deploy_assessment(sqlite_engine, tmp_path, "survey", script)
    instance = sqlite_engine.start("survey", {"csat": [5, 4, 2], "nps": [10, 9, 8, 7, 6, 0]})
    assert instance["data"]["survey"] == {"csat": 66.7, "nps": 0.0, "band": "at_risk"}


class CustomRisk:
    """A third-party rule: not trylast, so it answers before the built-in."""

    @hookimpl
    def score_risk(self, probability, impact):
        return {"score": 99, "band": "custom"}


class Abstains:
    """Returns None: the next plugin (the built-in) answers."""

    @hookimpl
    def score_priority(self, impact, urgency):
        return None


def test_installed_plugin_overrides_the_built_in_rule(database_url, tmp_path):
    pm = create_plugin_manager(entry_points=False, extra=[CustomRisk(), Abstains()])
    engine = Engine(load_settings(environ={}, database_url=database_url), plugins=pm)
    try:
        deploy_assessment(engine, tmp_path)
        instance = engine.start("assessment", CASE)
        assert instance["data"]["risk"] == {"score": 99, "band": "custom"}
        assert instance["data"]["prio"] == {"priority": "P2", "target_hours": 8}  # built-in answered
        assert only_task(instance)["element_id"] == "routine"  # 'custom' is not 'high'
    finally:
        engine.close()


def test_task_priority_hook_reads_the_engine_clock():
    """Inside an engine transaction the hook tells time by the engine's clock, not the wall clock."""
    from engine import timeclock

    due_in_two_days = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert scoring.score_task_priority(task(due_at=due_in_two_days), {}) == 50  # not due soon
    with timeclock.using(lambda: datetime.now(UTC) + timedelta(days=3)):  # the engine skipped ahead
        assert scoring.score_task_priority(task(due_at=due_in_two_days), {}) == 75  # overdue
