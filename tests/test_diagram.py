"""The SVG drawing of BPMN diagrams (engine/diagram/), ``sdf diagram`` and the pictures in docs/.

The shipped processes are drawn and checked shape by shape against their BPMNDI; small
hand-written BPMN documents check the notation (markers, dashed non-interrupting events,
default flows), that names from a user's file are escaped, and the errors. The pictures in
docs/diagrams/ must be exactly what the renderer draws now, so the docs cannot go stale.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from engine.cli import cli
from engine.diagram import render_svg, wrap
from engine.errors import InvalidInput

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = sorted((ROOT / "processes").glob("*.bpmn"))
DIAGRAMS = ROOT / "docs" / "diagrams"
PROCESSES_DOC = ROOT / "docs" / "processes.md"
SVG = "{http://www.w3.org/2000/svg}"
DI = {
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
}

HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC"
  xmlns:di="http://www.omg.org/spec/DD/20100524/DI" id="defs" targetNamespace="https://sdf.example/test">
"""


def bpmn(process: str, plane: str = "") -> bytes:
    """A BPMN document: the process elements, and the DI shapes and edges of plane ``plane``."""
    diagram = (
        f'<bpmndi:BPMNDiagram id="d"><bpmndi:BPMNPlane id="p" bpmnElement="proc">{plane}'
        "</bpmndi:BPMNPlane></bpmndi:BPMNDiagram>"
    )
    return (
        HEADER + f'<bpmn:process id="proc" isExecutable="true">{process}</bpmn:process>{diagram}</bpmn:definitions>'
    ).encode()


def shape(element_id: str, x: int, y: int, w: int, h: int, extra: str = "") -> str:
    bounds = f'<dc:Bounds x="{x}" y="{y}" width="{w}" height="{h}" />'
    return f'<bpmndi:BPMNShape id="{element_id}_di" bpmnElement="{element_id}"{extra}>{bounds}</bpmndi:BPMNShape>'


def edge(element_id: str, *points: tuple[int, int]) -> str:
    waypoints = "".join(f'<di:waypoint x="{x}" y="{y}" />' for x, y in points)
    return f'<bpmndi:BPMNEdge id="{element_id}_di" bpmnElement="{element_id}">{waypoints}</bpmndi:BPMNEdge>'


NOTATION = bpmn(
    """
    <bpmn:startEvent id="start" name="Go"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="work" name="Do the work">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="remind" name="Reminder" attachedToRef="work" cancelActivity="false">
      <bpmn:outgoing>f5</bpmn:outgoing><bpmn:timerEventDefinition><bpmn:timeDuration>"P2D"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:boundaryEvent id="deadline" attachedToRef="work">
      <bpmn:timerEventDefinition><bpmn:timeDuration>"P5D"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:serviceTask id="nudge" name="Nudge"><bpmn:incoming>f5</bpmn:incoming></bpmn:serviceTask>
    <bpmn:exclusiveGateway id="gw" name="OK?" default="f4"><bpmn:incoming>f2</bpmn:incoming></bpmn:exclusiveGateway>
    <bpmn:callActivity id="sub" name="Assess risk" calledElement="risk_assessment" />
    <bpmn:parallelGateway id="fork" />
    <bpmn:endEvent id="end" name="Done"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="gw" />
    <bpmn:sequenceFlow id="f3" name="yes" sourceRef="gw" targetRef="end">
      <bpmn:conditionExpression>ok</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f4" name="no" sourceRef="gw" targetRef="sub" />
    <bpmn:sequenceFlow id="f5" sourceRef="remind" targetRef="nudge" />
    """,
    shape("start", 100, 100, 36, 36)
    + shape("work", 180, 78, 100, 80)
    + shape("remind", 212, 140, 36, 36)
    + shape("deadline", 262, 140, 36, 36)
    + shape("nudge", 300, 200, 100, 80)
    + shape("gw", 330, 93, 50, 50, ' isMarkerVisible="true"')
    + shape("sub", 430, 200, 100, 80)
    + shape("fork", 600, 93, 50, 50)
    + shape("end", 442, 100, 36, 36)
    + edge("f1", (136, 118), (180, 118))
    + edge("f2", (280, 118), (330, 118))
    + edge("f3", (380, 118), (442, 118))
    + edge("f4", (355, 143), (355, 240), (430, 240))
    + edge("f5", (230, 176), (230, 240), (300, 240)),
)


def parse(svg: str) -> etree._Element:
    root = etree.fromstring(svg.encode())
    assert root.tag == f"{SVG}svg"
    return root


def drawn(root, element_id: str) -> etree._Element:
    found = root.findall(f".//{SVG}g[@data-element-id='{element_id}']")
    assert len(found) == 1, f"{element_id} drawn {len(found)} times"
    return found[0]


def text_of(element) -> str:
    return " ".join("".join(t.itertext()) for t in element.iter(f"{SVG}text"))


# -- the shipped processes -----------------------------------------------------------------------
@pytest.fixture(scope="module", params=[p.name for p in PROCESSES])
def shipped(request):
    path = ROOT / "processes" / request.param
    return etree.parse(str(path)), parse(render_svg(path))


def test_there_are_processes_to_draw():
    assert len(PROCESSES) >= 6


def test_every_di_shape_and_edge_is_drawn_once_with_its_id(shipped):
    source, svg = shipped
    shapes = source.xpath("//bpmndi:BPMNShape/@bpmnElement", namespaces=DI)
    edges = source.xpath("//bpmndi:BPMNEdge/@bpmnElement", namespaces=DI)
    assert shapes and edges
    drawn_ids = svg.xpath("//*[local-name()='g']/@data-element-id")
    assert sorted(drawn_ids) == sorted(shapes + edges)
    for flow in edges:
        assert drawn(svg, flow).find(f"{SVG}polyline") is not None


def test_names_are_written_and_the_view_box_holds_every_shape(shipped):
    source, svg = shipped
    text = " ".join(svg.itertext())
    for name in source.xpath("//bpmn:userTask/@name", namespaces=DI):
        assert all(word in text for word in name.split()), name
    x, y, w, h = (float(v) for v in svg.get("viewBox").split())
    for bounds in source.iter("{http://www.omg.org/spec/DD/20100524/DC}Bounds"):
        assert x <= float(bounds.get("x")) and float(bounds.get("x")) + float(bounds.get("width")) <= x + w
        assert y <= float(bounds.get("y")) and float(bounds.get("y")) + float(bounds.get("height")) <= y + h


def test_the_same_file_gives_the_same_bytes():
    assert render_svg(PROCESSES[0]) == render_svg(PROCESSES[0].read_bytes())


# -- the notation --------------------------------------------------------------------------------
def test_kinds_are_drawn_in_bpmn_notation():
    svg = parse(render_svg(NOTATION))
    assert drawn(svg, "work").get("data-element-type") == "userTask"
    assert drawn(svg, "work").find(f"{SVG}rect").get("rx") == "10"
    start, end = drawn(svg, "start").find(f"{SVG}circle"), drawn(svg, "end").find(f"{SVG}circle")
    assert float(end.get("stroke-width")) > float(start.get("stroke-width"))
    assert len(drawn(svg, "deadline").findall(f"{SVG}circle")) >= 3  # double ring + clock face
    assert drawn(svg, "gw").find(f"{SVG}polygon") is not None  # the diamond
    assert drawn(svg, "sub").find(f"{SVG}rect").get("stroke-width") == "4"  # call activity: thick border
    assert len(drawn(svg, "sub").findall(f"{SVG}rect")) == 2  # ... and the "+" marker
    assert len(drawn(svg, "nudge").findall(f"{SVG}circle")) == 3  # service task: the gear
    assert drawn(svg, "f1").find(f"{SVG}polygon") is not None  # arrow head


def test_non_interrupting_events_are_dashed_and_interrupting_ones_are_not():
    svg = parse(render_svg(NOTATION))
    rings = drawn(svg, "remind").findall(f"{SVG}circle")[:2]
    assert all(ring.get("stroke-dasharray") for ring in rings)
    assert not any(c.get("stroke-dasharray") for c in drawn(svg, "deadline").findall(f"{SVG}circle"))


def test_only_the_default_flow_has_the_slash():
    svg = parse(render_svg(NOTATION))
    assert drawn(svg, "f4").find(f"{SVG}path[@class='default-marker']") is not None
    assert drawn(svg, "f3").find(f"{SVG}path[@class='default-marker']") is None


def test_flow_and_event_names_are_labels():
    svg = parse(render_svg(NOTATION))
    labels = {g.get("data-label-for"): text_of(g) for g in svg.iter(f"{SVG}g") if g.get("data-label-for")}
    assert labels == {"start": "Go", "remind": "Reminder", "gw": "OK?", "end": "Done", "f3": "yes", "f4": "no"}


def test_labels_keep_off_the_flows_when_they_can():
    svg = parse(render_svg(NOTATION))
    # below the reminder runs its outgoing flow (x=230), so the label goes elsewhere
    backdrop = svg.find(f".//{SVG}g[@data-label-for='remind']/{SVG}rect")
    left, right = float(backdrop.get("x")), float(backdrop.get("x")) + float(backdrop.get("width"))
    top = float(backdrop.get("y"))
    assert not (left < 230 < right and top >= 176), (left, right, top)


def test_long_names_are_wrapped_inside_the_task():
    long_name = "Review the technical architecture with the client"
    svg = parse(render_svg(NOTATION.replace(b'name="Do the work"', f'name="{long_name}"'.encode())))
    lines = [t.text for t in drawn(svg, "work").iter(f"{SVG}tspan")]
    assert len(lines) >= 3 and " ".join(lines) == long_name
    assert all(len(line) * 6.5 <= 90 for line in lines)


def test_wrap_breaks_long_identifiers_after_underscores():
    assert wrap("delivery_manager", 60) == ["delivery_", "manager"]
    assert wrap("two words", 200) == ["two words"]


def test_hostile_names_are_escaped():
    hostile = '&lt;script&gt;alert("x")&lt;/script&gt; &amp; &lt;b onload="y"&gt;'
    svg_text = render_svg(NOTATION.replace(b'name="Do the work"', f"name='{hostile}'".encode()))
    assert "<script" not in svg_text and "<b " not in svg_text
    assert "&lt;script&gt;" in svg_text
    svg = parse(svg_text)
    assert svg.find(f".//{SVG}script") is None
    assert "".join(t.text for t in drawn(svg, "work").iter(f"{SVG}tspan")).startswith('<script>alert("x")')


# -- errors --------------------------------------------------------------------------------------
def test_a_file_without_diagram_information_is_refused_clearly():
    with pytest.raises(InvalidInput, match="has no diagram information"):
        render_svg(bpmn('<bpmn:startEvent id="s" />'))


def test_not_xml_and_not_bpmn_are_refused():
    with pytest.raises(InvalidInput, match="not well-formed XML"):
        render_svg(b"<bpmn:definitions")
    with pytest.raises(InvalidInput, match="not a BPMN 2.0 file"):
        render_svg(b"<svg/>")
    with pytest.raises(InvalidInput, match="cannot read the file"):
        render_svg("/nonexistent/process.bpmn")


# -- sdf diagram ---------------------------------------------------------------------------------
def sdf(*args: str):
    return CliRunner().invoke(cli, list(args), obj={})


def test_cli_writes_the_svg_file(tmp_path):
    out = tmp_path / "approval.svg"
    result = sdf("diagram", str(PROCESSES[0]), "-o", str(out))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert out.read_text(encoding="utf-8") == render_svg(PROCESSES[0])
    assert result.stdout == ""


def test_cli_prints_to_stdout_without_output():
    result = sdf("diagram", str(PROCESSES[0]))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == render_svg(PROCESSES[0])


@pytest.mark.parametrize("problem", ["missing", "no_di", "not_xml"])
def test_cli_errors_are_one_line_and_exit_1(tmp_path, problem):
    path = tmp_path / "process.bpmn"
    if problem == "no_di":
        path.write_bytes(bpmn('<bpmn:startEvent id="s" />'))
    elif problem == "not_xml":
        path.write_text("not xml at all")
    result = sdf("diagram", str(path), "-o", str(tmp_path / "out.svg"))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert str(path) in lines[0]
    assert not (tmp_path / "out.svg").exists()


# -- the docs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.stem)
def test_docs_diagrams_are_current(process):
    picture = DIAGRAMS / f"{process.stem}.svg"
    assert picture.exists(), f"docs/diagrams/{picture.name} is missing: run make diagrams"
    assert picture.read_text(encoding="utf-8") == render_svg(process), (
        f"docs/diagrams/{picture.name} differs from processes/{process.name}: run make diagrams"
    )


def test_docs_have_no_diagram_of_a_removed_process():
    stale = {p.stem for p in DIAGRAMS.glob("*.svg")} - {p.stem for p in PROCESSES}
    assert not stale, (
        f"docs/diagrams/ has pictures of processes that no longer exist: {sorted(stale)}; run make diagrams"
    )


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.stem)
def test_processes_doc_has_a_section_and_picture_per_process(process):
    text = PROCESSES_DOC.read_text(encoding="utf-8")
    heading = re.compile(rf"^## .*`{re.escape(process.stem)}`", re.MULTILINE)
    assert heading.search(text), f"docs/processes.md has no '## ... `{process.stem}`' section"
    assert re.search(rf"!\[[^\]]*\]\(diagrams/{re.escape(process.stem)}\.svg\)", text), (
        f"docs/processes.md does not show diagrams/{process.stem}.svg"
    )
