"""Warnings about BPMN files that deploy and run, but will surprise the people who use them.

Validation (:mod:`engine.validation`) refuses what cannot run. These checks find what runs
but is probably not what the designer meant: a user task nobody sees in an inbox (no lane,
no candidate group), a user task without a form (its data is never checked), a gateway that
can match no flow and has no default, an element no flow leads to or none leaves, an element
the diagram does not draw, an activity without a name (the inbox shows its id). Each warning
has the same ``file:line: element-id: message`` form as a validation problem; ``sdf
validate`` prints them and ``--strict`` fails on them, ``sdf deploy`` prints them.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from .parsing import Bundle
from .validation import BPMN_NS, SPIFF_NS, Problem

BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
HUMAN_TASKS = ("userTask", "manualTask")
ACTIVITIES = (
    "task",
    "userTask",
    "manualTask",
    "scriptTask",
    "serviceTask",
    "businessRuleTask",
    "sendTask",
    "receiveTask",
    "callActivity",
    "subProcess",
)
GATEWAYS = ("exclusiveGateway", "inclusiveGateway", "parallelGateway", "eventBasedGateway", "complexGateway")
EVENTS = ("startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent")
FLOW_NODES = ACTIVITIES + GATEWAYS + EVENTS
# need no incoming flow: where a process or sub-process begins, or attached to an activity
NO_INCOMING_NEEDED = ("startEvent", "boundaryEvent")
# need no outgoing flow: where a path ends
NO_OUTGOING_NEEDED = ("endEvent",)


def warnings(bundle: Bundle) -> list[Problem]:
    """Every warning of the BPMN files of ``bundle`` (files that do not parse are skipped:
    validation reports those)."""
    found: set[Problem] = set()
    for source in bundle.of_kind("bpmn"):
        try:
            root = etree.fromstring(source.content, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError:
            continue
        found.update(_file_warnings(source.name, root))
    return sorted(found)


def _file_warnings(name: str, root) -> Iterator[Problem]:
    drawn = {shape.get("bpmnElement") for shape in root.iter(f"{{{BPMNDI_NS}}}BPMNShape")}
    has_diagram = next(root.iter(f"{{{BPMNDI_NS}}}BPMNDiagram"), None) is not None
    for process in root.iterchildren(f"{{{BPMN_NS}}}process"):
        if process.get("isExecutable", "true") != "true":
            continue
        laned = {ref.text.strip() for ref in process.iter(f"{{{BPMN_NS}}}flowNodeRef") if ref.text}
        for container in (process, *process.iter(f"{{{BPMN_NS}}}subProcess")):
            yield from _container_warnings(name, container, laned, drawn if has_diagram else None)


def _container_warnings(name: str, container, laned: set[str], drawn: set[str] | None) -> Iterator[Problem]:
    flows = {f.get("id"): f for f in container.iterchildren(f"{{{BPMN_NS}}}sequenceFlow")}
    targets = {f.get("targetRef") for f in flows.values()}
    sources = {f.get("sourceRef") for f in flows.values()}
    for node in container.iterchildren(*(f"{{{BPMN_NS}}}{tag}" for tag in FLOW_NODES)):
        kind, node_id = etree.QName(node).localname, node.get("id")

        def warn(message: str, node=node, node_id=node_id) -> Problem:
            return Problem(name, node.sourceline, node_id, message)

        if kind in HUMAN_TASKS and node_id not in laned and not _property(node, "candidateGroup"):
            yield warn("no lane and no candidateGroup property: the task appears in nobody's group inbox")
        if kind == "userTask" and not _property(node, "formJsonSchemaFilename"):
            yield warn("user task without a form (formJsonSchemaFilename): what people submit is not checked")
        if kind in ACTIVITIES and not (node.get("name") or "").strip():
            yield warn(f"{kind} without a name: inboxes, history and diagrams show its id")
        if kind not in NO_INCOMING_NEEDED and node_id not in targets and not _in_event_subprocess(container):
            yield warn("no sequence flow leads here: it can never run")
        if kind not in NO_OUTGOING_NEEDED and node_id not in sources and not _ends_quietly(node):
            yield warn("no sequence flow leaves here: the path stops without an end event")
        if kind in ("exclusiveGateway", "inclusiveGateway"):
            yield from _gateway_warnings(name, node, flows)
        if drawn is not None and node_id not in drawn:
            yield warn("not in the diagram: modelers will not show it")


def _gateway_warnings(name: str, gateway, flows: dict) -> Iterator[Problem]:
    refs = (ref.text.strip() for ref in gateway.iterchildren(f"{{{BPMN_NS}}}outgoing") if ref.text)
    outgoing = [flows[ref] for ref in refs if ref in flows]
    if len(outgoing) < 2 or gateway.get("default"):
        return
    if all(_has_condition(f) for f in outgoing):
        kind = etree.QName(gateway).localname
        yield Problem(
            name,
            gateway.sourceline,
            gateway.get("id"),
            f"{kind} without a default flow: when no condition holds the instance stops with an incident",
        )


def _has_condition(flow) -> bool:
    condition = flow.find(f"{{{BPMN_NS}}}conditionExpression")
    return condition is not None and bool((condition.text or "").strip())


def _property(node, name: str) -> str | None:
    for prop in node.iter(f"{{{SPIFF_NS}}}property"):
        if prop.get("name") == name and (prop.get("value") or "").strip():
            return prop.get("value")
    return None


def _in_event_subprocess(container) -> bool:
    return etree.QName(container).localname == "subProcess" and container.get("triggeredByEvent") == "true"


def _ends_quietly(node) -> bool:
    """A compensation handler has no outgoing flow by design."""
    return node.get("isForCompensation") == "true"
