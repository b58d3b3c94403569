"""Small BPMN documents built in tests (a script, a condition) and written to a folder."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'id="defs_{pid}" targetNamespace="https://sdf.example/tests">\n'
)


def script_then_task(pid: str, script: str) -> str:
    """start -> user task 'prepare' (project_manager) -> script task 'work' -> user task 'check' -> end."""
    return (
        HEADER.format(pid=pid)
        + f'''  <bpmn:process id="{pid}" isExecutable="true">
    <bpmn:laneSet id="lanes"><bpmn:lane id="lane_pm" name="project_manager">
      <bpmn:flowNodeRef>prepare</bpmn:flowNodeRef><bpmn:flowNodeRef>check</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="prepare" name="Prepare"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:scriptTask id="work" name="Work"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>{escape(script)}</bpmn:script></bpmn:scriptTask>
    <bpmn:userTask id="check" name="Check"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="prepare" />
    <bpmn:sequenceFlow id="f2" sourceRef="prepare" targetRef="work" />
    <bpmn:sequenceFlow id="f3" sourceRef="work" targetRef="check" />
    <bpmn:sequenceFlow id="f4" sourceRef="check" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
'''
    )


def gateway_without_default(pid: str) -> str:
    """An exclusive gateway whose conditions can all be false (no default flow)."""
    return (
        HEADER.format(pid=pid)
        + f'''  <bpmn:process id="{pid}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:exclusiveGateway id="gw_size"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>fa</bpmn:outgoing><bpmn:outgoing>fb</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:userTask id="small" name="Small"><bpmn:incoming>fa</bpmn:incoming><bpmn:outgoing>fa2</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="large" name="Large"><bpmn:incoming>fb</bpmn:incoming><bpmn:outgoing>fb2</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end_a"><bpmn:incoming>fa2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_b"><bpmn:incoming>fb2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="gw_size" />
    <bpmn:sequenceFlow id="fa" sourceRef="gw_size" targetRef="small"><bpmn:conditionExpression>size &lt; 10</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="fb" sourceRef="gw_size" targetRef="large"><bpmn:conditionExpression>size &gt; 100</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="fa2" sourceRef="small" targetRef="end_a" />
    <bpmn:sequenceFlow id="fb2" sourceRef="large" targetRef="end_b" />
  </bpmn:process>
</bpmn:definitions>
'''
    )


def script_loop(pid: str) -> str:
    """A loop of two automatic steps with no wait state, ending when ``n`` reaches ``limit``."""
    return (
        HEADER.format(pid=pid)
        + f'''  <bpmn:process id="{pid}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:exclusiveGateway id="merge"><bpmn:incoming>f1</bpmn:incoming><bpmn:incoming>f_back</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:scriptTask id="step" name="Step"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>n = n + 1</bpmn:script></bpmn:scriptTask>
    <bpmn:exclusiveGateway id="more" default="f_end"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f_back</bpmn:outgoing><bpmn:outgoing>f_end</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:endEvent id="end"><bpmn:incoming>f_end</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="merge" />
    <bpmn:sequenceFlow id="f2" sourceRef="merge" targetRef="step" />
    <bpmn:sequenceFlow id="f3" sourceRef="step" targetRef="more" />
    <bpmn:sequenceFlow id="f_back" sourceRef="more" targetRef="merge"><bpmn:conditionExpression>n &lt; limit</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_end" sourceRef="more" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
'''
    )


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path
