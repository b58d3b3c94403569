"""A real third-party plugin, installed with pip and found through its ``sdf`` entry point.

``tests/sample_plugin`` is installed into the venv by ``make setup`` (``pip install -e
tests/sample_plugin``), exactly as a plugin author's package would be. These tests check the
whole path: discovery, its operators through the outbox (result, retry), its lifecycle hook,
disabling it, and the start-up errors a plugin author meets. They also exercise the
``engine.testing`` fixtures plugin authors reuse.
"""

from __future__ import annotations

import importlib.metadata

import pytest
import sdf_sample_plugin
import sqlalchemy as sa

from engine import jobs
from engine.errors import ConfigurationError, DefinitionInvalid
from engine.hookspecs import hookimpl
from engine.plugins import create_plugin_manager, describe
from engine.runtime import Engine
from engine.schema import outbox
from engine.settings import load_settings
from tests.conftest import only_task

# The fixtures plugin authors reuse. Loaded from this module (a plugin's conftest.py would say
# the same), so its helpers are imported inside the tests: importing engine.testing before
# pytest loads it would keep pytest from rewriting its asserts.
pytest_plugins = ["engine.testing"]


def deploy_bpmn(engine, source, **kwargs):
    from engine.testing import deploy_bpmn

    return deploy_bpmn(engine, source, **kwargs)


def run_jobs(engine, **kwargs):
    from engine.testing import run_jobs

    return run_jobs(engine, **kwargs)


def service_process(process_id: str, operator: str) -> str:
    """Start -> a service task calling ``operator`` -> a user task -> end."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
                  id="defs_{process_id}" targetNamespace="https://sdf.example/tests">
  <bpmn:process id="{process_id}" name="Calls {operator}" isExecutable="true">
    <bpmn:laneSet id="lanes">
      <bpmn:lane id="lane_pm" name="project_manager"><bpmn:flowNodeRef>review</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:serviceTask id="call" name="Call {operator}">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="{operator}" resultVariable="result">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="client" type="str" value="client" />
            <spiffworkflow:parameter id="hours" type="int" value="hours * 2" />
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:userTask id="review" name="Review the result">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="call" />
    <bpmn:sequenceFlow id="f2" sourceRef="call" targetRef="review" />
    <bpmn:sequenceFlow id="f3" sourceRef="review" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


SCRIPT_PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  id="defs_estimate" targetNamespace="https://sdf.example/tests">
  <bpmn:process id="estimate" name="Estimate with a plugin function" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="calc" name="Estimate"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>estimate = with_contingency(hours)</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="calc" />
    <bpmn:sequenceFlow id="f2" sourceRef="calc" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""

REQUEST = {"client": "ACME", "hours": 4}


def job_rows(engine, instance_id):
    with engine.db.read() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.instance_id == instance_id)).all()


@pytest.fixture
def seen_tasks():
    """The sample plugin's ``task_created`` log, emptied for this test."""
    sdf_sample_plugin.SEEN_TASKS.clear()
    yield sdf_sample_plugin.SEEN_TASKS
    sdf_sample_plugin.SEEN_TASKS.clear()


# -- discovery ----------------------------------------------------------------------------------
def test_the_sample_plugin_is_installed_under_the_sdf_entry_point():
    [entry] = [e for e in importlib.metadata.entry_points(group="sdf") if e.name == "sample"]
    assert entry.value == "sdf_sample_plugin"
    assert entry.dist.name == "sdf-sample-plugin" and entry.dist.version == "0.1.0"


def test_create_plugin_manager_loads_it_from_the_entry_point():
    pm = create_plugin_manager()
    assert pm.get_plugin("sample") is sdf_sample_plugin
    info = {p.name: p for p in describe(pm)}["sample"]
    assert info.to_dict() == {
        "name": "sample",
        "version": "0.1.0",
        "hooks": ["register_operators", "task_created"],
        "builtin": False,
    }
    assert "sample" not in {p.name for p in describe(create_plugin_manager(entry_points=False))}


def test_its_operators_are_installed_with_the_plugin_named_as_provider(sdf_engine):
    providers = {op.name: op.provider for op in sdf_engine.operators.all()}
    assert providers["sample_echo"] == providers["sample_fail_once"] == "sample"


# -- operators through the outbox ---------------------------------------------------------------
def test_sample_echo_runs_a_service_task_end_to_end(sdf_engine, seen_tasks):
    deploy_bpmn(sdf_engine, service_process("echo_demo", "sample_echo"), name="echo_demo.bpmn")
    instance = sdf_engine.start("echo_demo", REQUEST)
    assert instance["status"] == "waiting" and instance["tasks"] == []
    [job] = job_rows(sdf_engine, instance["id"])
    assert (job.operator, job.status) == ("sample_echo", "pending")
    assert run_jobs(sdf_engine) == 1
    after = sdf_engine.get_instance(instance["id"])
    assert after["data"]["result"] == {"echo": {"client": "ACME", "hours": 8}, "key": job.idempotency_key}
    assert only_task(after)["element_id"] == "review"
    assert job_rows(sdf_engine, instance["id"])[0].status == "done"
    # the plugin's task_created hook saw the new task, as the inbox shows it
    [seen] = seen_tasks
    assert (seen["element_id"], seen["instance_id"], seen["candidate_group"]) == (
        "review",
        instance["id"],
        "project_manager",
    )
    assert seen["id"] == only_task(after)["id"]


def test_sample_fail_once_is_retried_then_succeeds(engine):
    from engine.testing import Clock

    engine.clock = Clock()
    deploy_bpmn(engine, service_process("flaky", "sample_fail_once"))
    instance = engine.start("flaky", REQUEST)
    assert jobs.run_due(engine) == 1
    [job] = job_rows(engine, instance["id"])
    assert (job.status, job.attempts) == ("pending", 1)
    assert job.last_error == "ConnectionError: sample_fail_once: attempt 1 fails on purpose"
    assert jobs.run_due(engine) == 0  # backoff: the retry is not due yet
    assert run_jobs(engine, wait_for_retries=True) == 1
    after = engine.get_instance(instance["id"])
    assert after["data"]["result"] == {"echo": {"client": "ACME", "hours": 8}, "attempt": 2}
    assert only_task(after)["element_id"] == "review"
    [job] = job_rows(engine, instance["id"])
    assert (job.status, job.attempts) == ("done", 2)


# -- disabling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["SDF_DISABLE_PLUGINS", "create_plugin_manager"])
def test_disabling_the_plugin_removes_it_and_its_operators(sdf_database_url, how):
    if how == "SDF_DISABLE_PLUGINS":
        settings = load_settings(environ={"SDF_DISABLE_PLUGINS": "sample"}, database_url=sdf_database_url)
        engine = Engine(settings)
    else:
        settings = load_settings(environ={}, database_url=sdf_database_url)
        engine = Engine(settings, plugins=create_plugin_manager(disabled=["sample"]))
    try:
        assert "sample" not in {p.name for p in describe(engine.plugins)}
        assert not {"sample_echo", "sample_fail_once"} & engine.operators.names()
        assert "http_request" in engine.operators.names()  # the others are still there
        with pytest.raises(DefinitionInvalid) as info:
            deploy_bpmn(engine, service_process("echo_demo", "sample_echo"), name="echo_demo.bpmn")
        assert "echo_demo.bpmn:10: call: unknown operator 'sample_echo'" in str(info.value)
    finally:
        engine.close()


# -- start-up errors ------------------------------------------------------------------------------
class EchoAgain:
    """A plugin that picks an operator name the sample plugin already uses."""

    @hookimpl
    def register_operators(self, register):
        register("sample_echo", lambda params, call: params)


class FirstEstimator:
    @hookimpl
    def register_operators(self, register):
        register("estimate", lambda params, call: 1)


class SecondEstimator:
    @hookimpl
    def register_operators(self, register):
        register("estimate", lambda params, call: 2)


def test_an_operator_name_taken_by_an_installed_plugin_is_refused_naming_both(sdf_database_url):
    settings = load_settings(environ={}, database_url=sdf_database_url)
    with pytest.raises(ConfigurationError) as info:
        Engine(settings, plugins=create_plugin_manager(extra=[EchoAgain()]))
    assert info.value.message == "operator 'sample_echo' is provided by both sample and EchoAgain; rename one"


def test_two_plugins_registering_the_same_operator_fail_naming_both(sdf_plugins):
    sdf_plugins.register(FirstEstimator())
    with pytest.raises(ConfigurationError) as info:
        sdf_plugins.register(SecondEstimator())
    assert "operator 'estimate' is provided by both FirstEstimator and SecondEstimator" in info.value.message


# -- the engine.testing fixtures ------------------------------------------------------------------
class Contingency:
    """Contributes a script function and listens to the end of instances."""

    def __init__(self):
        self.completed = []

    @hookimpl
    def register_script_functions(self, register, hook):
        register("with_contingency", lambda hours: round(hours * 1.2, 1))

    @hookimpl
    def instance_completed(self, instance):
        self.completed.append((instance["process_id"], instance["data"]["estimate"]))


class ContingencyAgain:
    @hookimpl
    def register_script_functions(self, register):
        register("with_contingency", lambda hours: hours)


def test_sdf_plugins_registers_an_object_for_one_test(sdf_plugins):
    plugin = Contingency()
    engine = sdf_plugins.register(plugin)
    assert engine.plugins.is_registered(plugin)
    deploy_bpmn(engine, SCRIPT_PROCESS)
    instance = engine.start("estimate", {"hours": 10})
    assert instance["status"] == "completed" and instance["data"]["estimate"] == 12.0
    assert plugin.completed == [("estimate", 12.0)]
    with pytest.raises(ConfigurationError) as info:
        sdf_plugins.register(ContingencyAgain())
    assert (
        info.value.message == "script function 'with_contingency' is provided by both Contingency and ContingencyAgain"
    )


def test_sdf_plugins_replaces_an_installed_plugin_registered_as_an_object(sdf_plugins, seen_tasks):
    engine = sdf_plugins.register(sdf_sample_plugin)
    names = {p.name for p in describe(engine.plugins)}
    assert "sample" not in names and "sdf_sample_plugin" in names
    assert {op.provider for op in engine.operators.all() if op.name.startswith("sample_")} == {"sdf_sample_plugin"}
    deploy_bpmn(engine, service_process("echo_demo", "sample_echo"))
    engine.start("echo_demo", REQUEST)
    assert run_jobs(engine) == 1
    assert [t["element_id"] for t in seen_tasks] == ["review"]


def test_sdf_engine_uses_the_test_clock_and_an_empty_database(sdf_engine, sdf_clock):
    assert sdf_engine.clock is sdf_clock and sdf_engine.settings.disable_plugins == ""
    assert "sample_echo" in sdf_engine.operators.names()
    before = sdf_clock()
    sdf_clock.advance(3600)
    assert (sdf_clock() - before).total_seconds() >= 3600
    assert sdf_engine.list_definitions() == [] and sdf_engine.list_instances() == []


class Typo:
    @hookimpl
    def task_creatd(self, task):
        pass


class WrongArgument:
    @hookimpl
    def task_created(self, tsk):
        pass


def test_a_misspelled_hook_fails_at_start_up_naming_the_plugin():
    with pytest.raises(ConfigurationError) as info:
        create_plugin_manager(extra=[Typo()])
    assert info.value.message.startswith("plugin 'Typo': unknown hook 'task_creatd'")
    assert "task_created" in info.value.message


def test_an_argument_the_hook_does_not_have_fails_naming_the_plugin():
    with pytest.raises(ConfigurationError) as info:
        create_plugin_manager(extra=[WrongArgument()])
    assert info.value.message.startswith("plugin 'WrongArgument' is invalid")
