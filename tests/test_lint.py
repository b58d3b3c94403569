"""Warnings: files that deploy and run, but whose users would be surprised."""

from __future__ import annotations

import json

from click.testing import CliRunner

from engine.cli import cli
from engine.lint import warnings
from engine.parsing import collect_files
from tests import processes as p

SPIFF = 'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '


def lint(tmp_path, text: str, name: str = "proc.bpmn") -> list[str]:
    return [str(w) for w in warnings(collect_files([p.write(tmp_path, name, text)]))]


def test_a_clean_process_has_no_warnings(tmp_path):
    text = p.script_then_task("clean", "x = 1").replace(
        'id="prepare" name="Prepare">', 'id="prepare" name="Prepare">' + _form("f.json")
    )
    text = text.replace('id="check" name="Check">', 'id="check" name="Check">' + _form("f.json"))
    text = text.replace("<bpmn:definitions ", "<bpmn:definitions " + SPIFF)
    assert lint(tmp_path, text) == []


def test_user_tasks_without_form_and_without_lane_are_named_with_their_line(tmp_path):
    text = p.gateway_without_default("gw")  # two user tasks, no lanes, no forms, gateway without default
    found = lint(tmp_path, text)
    assert (
        "proc.bpmn:6: small: no lane and no candidateGroup property: the task appears in nobody's group inbox" in found
    )
    assert (
        "proc.bpmn:7: large: user task without a form (formJsonSchemaFilename): what people submit is not checked"
        in found
    )
    gateway = [w for w in found if w.startswith("proc.bpmn:5: gw_size:")]
    assert gateway == [
        "proc.bpmn:5: gw_size: exclusiveGateway without a default flow: "
        "when no condition holds the instance stops with an incident"
    ]


def test_a_default_flow_or_an_unconditional_flow_silences_the_gateway_warning(tmp_path):
    with_default = p.gateway_without_default("gw").replace(
        '<bpmn:exclusiveGateway id="gw_size">', '<bpmn:exclusiveGateway id="gw_size" default="fb">'
    )
    assert not [w for w in lint(tmp_path, with_default) if "gw_size" in w]
    unconditional = p.gateway_without_default("gw").replace(
        "<bpmn:conditionExpression>size &gt; 100</bpmn:conditionExpression>", ""
    )
    assert not [w for w in lint(tmp_path, unconditional) if "gw_size" in w]


def test_unreachable_and_dead_end_elements_and_nameless_activities(tmp_path):
    text = p.script_then_task("dead", "x = 1").replace(
        "  </bpmn:process>",
        '    <bpmn:scriptTask id="orphan"><bpmn:script>y = 2</bpmn:script></bpmn:scriptTask>\n  </bpmn:process>',
    )
    found = [w for w in lint(tmp_path, text) if ": orphan:" in w]
    assert any("no sequence flow leads here: it can never run" in w for w in found)
    assert any("no sequence flow leaves here: the path stops without an end event" in w for w in found)
    assert any("scriptTask without a name" in w for w in found)


def test_an_element_missing_from_the_diagram_is_reported(tmp_path):
    text = p.script_then_task("drawn", "x = 1").replace(
        "</bpmn:definitions>",
        '<bpmndi:BPMNDiagram xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" id="d">'
        '<bpmndi:BPMNPlane id="pl" bpmnElement="drawn"/></bpmndi:BPMNDiagram></bpmn:definitions>',
    )
    assert any(w.endswith("work: not in the diagram: modelers will not show it") for w in lint(tmp_path, text))
    # a file without any diagram is not warned about each element (it is allowed to run without DI)
    assert not [w for w in lint(tmp_path, p.script_then_task("bare", "x = 1")) if "diagram" in w]


def test_sdf_validate_prints_warnings_and_strict_fails_on_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SDF_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    path = p.write(tmp_path, "gw.bpmn", p.gateway_without_default("gw"))
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", str(path)])
    assert ok.exit_code == 0 and "ok: 1 process(es): gw (5 warning(s))" in ok.stdout
    assert "warning: gw.bpmn:5: gw_size: exclusiveGateway without a default flow" in ok.stderr
    strict = runner.invoke(cli, ["validate", "--strict", str(path)])
    assert strict.exit_code == 1 and "failed (--strict): 1 process(es): gw (5 warning(s))" in strict.stdout
    as_json = runner.invoke(cli, ["validate", "--json", str(path)])
    report = json.loads(as_json.stdout)
    assert report["valid"] is True and len(report["warnings"]) == 5


def _form(name: str) -> str:
    return (
        "<bpmn:extensionElements><spiffworkflow:properties>"
        f'<spiffworkflow:property name="formJsonSchemaFilename" value="{name}" />'
        "</spiffworkflow:properties></bpmn:extensionElements>"
    )
