"""How each BPMN element looks: activities, events, gateways, data and flows, with their markers.

This follows the visual language of BPMN modelers (bpmn-js): rounded tasks with a type marker
in the corner and loop or collapsed markers at the bottom, circles for events (thin start,
thick end, double intermediate, dashed when non-interrupting) with their trigger drawn inside,
diamonds for gateways, pages and cylinders for data, and arrows for flows. Each ``draw_*``
function draws one element into its ``<g>``; where it sits and its label are the drawing's job.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lxml import etree

from .geometry import Box, Edge, Point, Shape, add, rect, svg_path, svg_points, unit_vector
from .reading import BPMN_NS

INK = "#22242a"
PAPER = "#ffffff"
LINE = {"fill": "none", "stroke": INK, "stroke-width": 1.5}

TASKS = {"task", "userTask", "scriptTask", "serviceTask", "businessRuleTask", "manualTask", "sendTask", "receiveTask"}
ACTIVITIES = TASKS | {"callActivity", "subProcess", "transaction", "adHocSubProcess"}
EVENTS = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"}
GATEWAYS = {"exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway"}
DATA = {"dataObjectReference", "dataStoreReference", "dataObject", "dataInput", "dataOutput"}


# -- activities ----------------------------------------------------------------------------------
def draw_activity(g, shape: Shape, expanded: bool) -> None:
    box, kind, element = shape.box, shape.kind, shape.element
    width = 4 if kind == "callActivity" else 2
    outline = rect(box) | {"rx": 10, "fill": PAPER, "stroke": INK, "stroke-width": width}
    if element is not None and element.get("triggeredByEvent") == "true":
        outline["stroke-dasharray"] = "6,3"
        outline["stroke-width"] = 1.5
    add(g, "rect", outline)
    if kind == "transaction":
        inner = Box(box.x + 3, box.y + 3, box.w - 6, box.h - 6)
        add(g, "rect", rect(inner) | {"rx": 7, "fill": "none", "stroke": INK, "stroke-width": 1.5})
    if kind in TASK_MARKERS:
        TASK_MARKERS[kind](g, box.x, box.y)
    markers = bottom_markers(element, kind, expanded)
    start = box.cx - (len(markers) * 18 - 4) / 2
    for i, marker in enumerate(markers):
        marker(g, start + i * 18, box.bottom - 18)


def bottom_markers(element, kind: str, expanded: bool) -> list:
    """The markers drawn at the bottom centre of an activity: loop or multi-instance, ad hoc, collapsed."""
    markers = []
    if element is not None:
        loop = element.find(f"{{{BPMN_NS}}}standardLoopCharacteristics")
        multi = element.find(f"{{{BPMN_NS}}}multiInstanceLoopCharacteristics")
        if loop is not None:
            markers.append(_loop_marker)
        elif multi is not None:
            markers.append(_sequential_marker if multi.get("isSequential") == "true" else _parallel_marker)
    if kind == "adHocSubProcess":
        markers.append(_adhoc_marker)
    if kind == "callActivity" or (kind in ("subProcess", "transaction", "adHocSubProcess") and not expanded):
        markers.append(_collapsed_marker)
    return markers


def _collapsed_marker(g, x: float, y: float) -> None:
    add(g, "rect", {"x": x, "y": y, "width": 14, "height": 14, "fill": PAPER, "stroke": INK, "stroke-width": 1.5})
    add(g, "path", {"d": svg_path("M", x + 7, y + 3, "V", y + 11, "M", x + 3, y + 7, "H", x + 11)} | LINE)


def _loop_marker(g, x: float, y: float) -> None:
    add(g, "path", {"d": svg_path("M", x + 3, y + 11, "A", 5.5, 5.5, 0, 1, 1, x + 11, y + 11)} | LINE)
    add(g, "path", {"d": svg_path("M", x + 1, y + 8, "L", x + 3, y + 11, "L", x + 6, y + 10)} | LINE)


def _parallel_marker(g, x: float, y: float) -> None:
    for dx in (2, 7, 12):
        add(g, "path", {"d": svg_path("M", x + dx, y + 1, "V", y + 13), "stroke": INK, "stroke-width": 2})


def _sequential_marker(g, x: float, y: float) -> None:
    for dy in (2, 7, 12):
        add(g, "path", {"d": svg_path("M", x + 1, y + dy, "H", x + 13), "stroke": INK, "stroke-width": 2})


def _adhoc_marker(g, x: float, y: float) -> None:
    add(g, "path", {"d": svg_path("M", x, y + 8, "C", x + 3, y + 3, x + 7, y + 12, x + 14, y + 6)} | LINE)


def _user_marker(g, x: float, y: float) -> None:
    add(g, "circle", {"cx": x + 15, "cy": y + 11, "r": 4} | LINE | {"fill": PAPER})
    body = svg_path("M", x + 7, y + 24, "C", x + 7, y + 15, x + 23, y + 15, x + 23, y + 24, "Z")
    add(g, "path", {"d": body} | LINE | {"fill": PAPER})


def _script_marker(g, x: float, y: float) -> None:
    page = svg_path("M", x + 10, y + 7, "H", x + 23, "C", x + 18, y + 12, x + 25, y + 17, x + 20, y + 23)
    page += " " + svg_path("H", x + 7, "C", x + 12, y + 18, x + 5, y + 12, x + 10, y + 7, "Z")
    add(g, "path", {"d": page} | LINE | {"stroke-width": 1.2})
    for dy in (11, 15, 19):
        add(g, "path", {"d": svg_path("M", x + 11, y + dy, "H", x + 19), "stroke": INK})


def _service_marker(g, x: float, y: float) -> None:
    gear = {"cx": x + 15, "cy": y + 15, "r": 5.5, "fill": PAPER, "stroke": INK, "stroke-width": 3.5}
    add(g, "circle", gear | {"stroke-dasharray": "2.16,2.16"})
    add(g, "circle", {"cx": x + 15, "cy": y + 15, "r": 4.5, "fill": PAPER, "stroke": INK, "stroke-width": 1.5})
    add(g, "circle", {"cx": x + 15, "cy": y + 15, "r": 1.8, "fill": PAPER, "stroke": INK, "stroke-width": 1.2})


def _rule_marker(g, x: float, y: float) -> None:
    add(g, "rect", {"x": x + 7, "y": y + 8, "width": 17, "height": 13} | LINE | {"stroke-width": 1.2})
    add(g, "rect", {"x": x + 7, "y": y + 8, "width": 17, "height": 4, "fill": INK})
    add(g, "path", {"d": svg_path("M", x + 7, y + 16.5, "H", x + 24, "M", x + 12, y + 12, "V", y + 21), "stroke": INK})


def _manual_marker(g, x: float, y: float) -> None:
    hand = svg_path("M", x + 6, y + 13, "L", x + 10, y + 9, "H", x + 22, "M", x + 13, y + 13, "H", x + 24)
    hand += " " + svg_path("M", x + 13, y + 17, "H", x + 23, "M", x + 13, y + 21, "H", x + 21)
    hand += " " + svg_path("M", x + 6, y + 13, "V", y + 21, "Q", x + 6, y + 24, x + 9, y + 24, "H", x + 19)
    add(g, "path", {"d": hand} | LINE | {"stroke-width": 1.2, "stroke-linecap": "round"})


def _envelope(g, x: float, y: float, w: float, h: float, filled: bool) -> None:
    add(
        g,
        "rect",
        {"x": x, "y": y, "width": w, "height": h} | LINE | {"stroke-width": 1.2, "fill": INK if filled else PAPER},
    )
    fold = {"fill": "none", "stroke": PAPER if filled else INK, "stroke-width": 1.2}
    add(g, "path", {"d": svg_path("M", x, y, "L", x + w / 2, y + h * 0.55, "L", x + w, y)} | fold)


TASK_MARKERS = {
    "userTask": _user_marker,
    "scriptTask": _script_marker,
    "serviceTask": _service_marker,
    "businessRuleTask": _rule_marker,
    "manualTask": _manual_marker,
    "sendTask": lambda g, x, y: _envelope(g, x + 7, y + 9, 17, 12, True),
    "receiveTask": lambda g, x, y: _envelope(g, x + 7, y + 9, 17, 12, False),
}


# -- events --------------------------------------------------------------------------------------
def draw_event(g, shape: Shape) -> None:
    box, kind, element = shape.box, shape.kind, shape.element
    cx, cy, r = box.cx, box.cy, min(box.w, box.h) / 2
    circle = {"cx": cx, "cy": cy, "r": r, "fill": PAPER, "stroke": INK}
    dashed = {"stroke-dasharray": "5.5,3"} if _non_interrupting(element, kind) else {}
    if kind == "startEvent":
        add(g, "circle", circle | {"stroke-width": 2} | dashed)
    elif kind == "endEvent":
        add(g, "circle", circle | {"stroke-width": 4})
    else:
        add(g, "circle", circle | {"stroke-width": 1.5} | dashed)
        add(g, "circle", circle | {"r": r - 3, "fill": "none", "stroke-width": 1.5} | dashed)
    throwing = kind in ("endEvent", "intermediateThrowEvent")
    definitions = _event_definitions(element)
    if len(definitions) > 1:
        _polygon_marker(g, cx, cy, r, 5, throwing)
    elif definitions:
        EVENT_MARKERS.get(definitions[0], lambda *a: None)(g, cx, cy, r, throwing)


def _non_interrupting(element, kind: str) -> bool:
    if element is None:
        return False
    if kind == "boundaryEvent":
        return element.get("cancelActivity", "true") == "false"
    return kind == "startEvent" and element.get("isInterrupting", "true") == "false"


def _event_definitions(element) -> list[str]:
    if element is None:
        return []
    names = [etree.QName(child).localname for child in element if isinstance(child.tag, str)]
    return [n for n in names if n.endswith("EventDefinition")]


def _timer_marker(g, cx, cy, r, filled) -> None:
    face = r * 0.6
    add(g, "circle", {"cx": cx, "cy": cy, "r": face, "fill": PAPER, "stroke": INK, "stroke-width": 1.5})
    ticks = []
    for hour in range(12):
        a = hour * math.pi / 6
        ticks += ["M", cx + math.sin(a) * face * 0.78, cy - math.cos(a) * face * 0.78]
        ticks += ["L", cx + math.sin(a) * face, cy - math.cos(a) * face]
    add(g, "path", {"d": svg_path(*ticks), "stroke": INK, "stroke-width": 1})
    hands = svg_path("M", cx, cy - face * 0.7, "L", cx, cy, "L", cx + face * 0.5, cy + face * 0.15)
    add(g, "path", {"d": hands} | LINE | {"stroke-linecap": "round"})


def _message_marker(g, cx, cy, r, filled) -> None:
    w, h = r * 1.0, r * 0.68
    _envelope(g, cx - w / 2, cy - h / 2, w, h, filled)


def _shape_marker(points) -> Callable:
    """An event marker drawn as a closed polygon of points relative to the centre, in radii."""

    def marker(g, cx, cy, r, filled) -> None:
        absolute = [(cx + px * r, cy + py * r) for px, py in points]
        add(
            g,
            "polygon",
            {"points": svg_points(absolute)} | LINE | {"fill": INK if filled else PAPER, "stroke-linejoin": "round"},
        )

    return marker


def _polygon_marker(g, cx, cy, r, sides: int, filled: bool) -> None:
    corners = [
        (math.sin(i * 2 * math.pi / sides) * 0.5, -math.cos(i * 2 * math.pi / sides) * 0.5) for i in range(sides)
    ]
    _shape_marker(corners)(g, cx, cy, r, filled)


def _terminate_marker(g, cx, cy, r, filled) -> None:
    add(g, "circle", {"cx": cx, "cy": cy, "r": r * 0.55, "fill": INK})


def _conditional_marker(g, cx, cy, r, filled) -> None:
    w, h = r * 0.7, r * 0.9
    add(g, "rect", {"x": cx - w / 2, "y": cy - h / 2, "width": w, "height": h} | LINE | {"fill": PAPER})
    for i in range(1, 5):
        y = cy - h / 2 + i * h / 5
        add(g, "path", {"d": svg_path("M", cx - w / 2 + 2, y, "H", cx + w / 2 - 2), "stroke": INK})


def _cancel_marker(g, cx, cy, r, filled) -> None:
    d = r * 0.35
    cross = svg_path("M", cx - d, cy - d, "L", cx + d, cy + d, "M", cx + d, cy - d, "L", cx - d, cy + d)
    add(g, "path", {"d": cross, "stroke": INK, "stroke-width": 3})


EVENT_MARKERS = {
    "timerEventDefinition": _timer_marker,
    "messageEventDefinition": _message_marker,
    "errorEventDefinition": _shape_marker(
        [(-0.45, 0.45), (-0.15, -0.4), (0.1, 0.05), (0.4, -0.45), (0.15, 0.4), (-0.1, -0.05)]
    ),
    "signalEventDefinition": _shape_marker([(0, -0.5), (0.45, 0.3), (-0.45, 0.3)]),
    "escalationEventDefinition": _shape_marker([(0, -0.5), (0.35, 0.4), (0, 0.1), (-0.35, 0.4)]),
    "compensateEventDefinition": _shape_marker(
        [(-0.5, 0), (0, -0.3), (0, 0), (0.5, -0.3), (0.5, 0.3), (0, 0), (0, 0.3)]
    ),
    "linkEventDefinition": _shape_marker(
        [(-0.4, -0.15), (0.1, -0.15), (0.1, -0.35), (0.45, 0), (0.1, 0.35), (0.1, 0.15), (-0.4, 0.15)]
    ),
    "conditionalEventDefinition": _conditional_marker,
    "terminateEventDefinition": _terminate_marker,
    "cancelEventDefinition": _cancel_marker,
}


# -- gateways ------------------------------------------------------------------------------------
def draw_gateway(g, shape: Shape) -> None:
    box = shape.box
    cx, cy, s = box.cx, box.cy, min(box.w, box.h) / 50
    diamond = [(cx, box.y), (box.right, cy), (cx, box.bottom), (box.x, cy)]
    add(
        g,
        "polygon",
        {"points": svg_points(diamond), "fill": PAPER, "stroke": INK, "stroke-width": 2, "stroke-linejoin": "round"},
    )
    thick = {"stroke": INK, "stroke-width": 4 * s, "stroke-linecap": "round", "fill": "none"}
    x, p = 7.5 * s, 11 * s
    if shape.kind in ("exclusiveGateway", "complexGateway"):
        add(
            g,
            "path",
            {"d": svg_path("M", cx - x, cy - x, "L", cx + x, cy + x, "M", cx + x, cy - x, "L", cx - x, cy + x)} | thick,
        )
    if shape.kind in ("parallelGateway", "complexGateway"):
        add(g, "path", {"d": svg_path("M", cx, cy - p, "V", cy + p, "M", cx - p, cy, "H", cx + p)} | thick)
    elif shape.kind == "inclusiveGateway":
        add(g, "circle", {"cx": cx, "cy": cy, "r": 10 * s} | thick | {"stroke-width": 3 * s})
    elif shape.kind == "eventBasedGateway":
        ring = {"cx": cx, "cy": cy, "fill": "none", "stroke": INK, "stroke-width": 1.2}
        add(g, "circle", ring | {"r": 12 * s})
        add(g, "circle", ring | {"r": 9.5 * s})
        _polygon_marker(g, cx, cy, 12 * s, 5, False)


# -- data ----------------------------------------------------------------------------------------
def draw_data(g, shape: Shape) -> None:
    box = shape.box
    if shape.kind == "dataStoreReference":
        rx, ry = box.w / 2, min(8.0, box.h / 6)
        body = svg_path("M", box.x, box.y + ry, "V", box.bottom - ry, "A", rx, ry, 0, 0, 0, box.right, box.bottom - ry)
        body += " " + svg_path("V", box.y + ry, "A", rx, ry, 0, 0, 0, box.x, box.y + ry, "Z")
        add(g, "path", {"d": body} | LINE | {"fill": PAPER})
        for k in (1, 2, 3):
            rim = svg_path("M", box.x, box.y + ry * k, "A", rx, ry, 0, 0, 0, box.right, box.y + ry * k)
            add(g, "path", {"d": rim} | LINE)
        return
    fold = min(10.0, box.w / 3)
    page = svg_path(
        "M", box.x, box.y, "H", box.right - fold, "L", box.right, box.y + fold, "V", box.bottom, "H", box.x, "Z"
    )
    add(g, "path", {"d": page} | LINE | {"fill": PAPER, "stroke-linejoin": "round"})
    add(g, "path", {"d": svg_path("M", box.right - fold, box.y, "V", box.y + fold, "H", box.right)} | LINE)
    if shape.kind in ("dataInput", "dataOutput"):
        arrow = [(0.15, 0.15), (0.35, 0.15), (0.35, 0.08), (0.5, 0.22), (0.35, 0.36), (0.35, 0.29), (0.15, 0.29)]
        fill = INK if shape.kind == "dataOutput" else PAPER
        absolute = [(box.x + px * box.w, box.y + py * box.h) for px, py in arrow]
        add(g, "polygon", {"points": svg_points(absolute), "fill": fill, "stroke": INK})
    element = shape.element
    if element is not None and element.get("isCollection") == "true":
        _parallel_marker(g, box.cx - 7, box.bottom - 15)


# -- edges ---------------------------------------------------------------------------------------
def draw_edge(g, edge: Edge) -> None:
    points, kind, element = edge.points, edge.kind, edge.element
    style = dict(LINE) | {"stroke-linejoin": "round"}
    if kind == "messageFlow":
        style["stroke-dasharray"] = "10,6"
    elif kind in ("association", "dataInputAssociation", "dataOutputAssociation"):
        style |= {"stroke-dasharray": "0.5,5", "stroke-linecap": "round"}
    add(g, "polyline", {"points": svg_points(points)} | style)
    if kind == "sequenceFlow":
        _arrow_head(g, points, filled=True)
        _flow_start_marker(g, edge)
    elif kind == "messageFlow":
        add(g, "circle", {"cx": points[0][0], "cy": points[0][1], "r": 4} | LINE | {"fill": PAPER})
        _arrow_head(g, points, filled=False)
    elif kind in ("dataInputAssociation", "dataOutputAssociation"):
        _arrow_head(g, points, filled=None)
    elif kind == "association" and element is not None:
        direction = element.get("associationDirection", "None")
        if direction in ("One", "Both"):
            _arrow_head(g, points, filled=None)
        if direction == "Both":
            _arrow_head(g, points[::-1], filled=None)


def _arrow_head(g, points: list[Point], filled: bool | None) -> None:
    """A head at the last point: filled (sequence flow), white (message flow) or open lines (None)."""
    tip = points[-1]
    before = next((p for p in reversed(points[:-1]) if p != tip), None)
    if before is None:
        return
    ux, uy = unit_vector(before, tip)
    bx, by = tip[0] - ux * 11, tip[1] - uy * 11
    left, right = (bx - uy * 4, by + ux * 4), (bx + uy * 4, by - ux * 4)
    if filled is None:
        add(g, "polyline", {"points": svg_points([left, tip, right])} | LINE)
        return
    add(
        g,
        "polygon",
        {
            "points": svg_points([left, tip, right]),
            "fill": INK if filled else PAPER,
            "stroke": INK,
            "stroke-linejoin": "round",
        },
    )


def _flow_start_marker(g, edge: Edge) -> None:
    """The slash of a default flow, or the small diamond of a conditional flow leaving an activity."""
    element = edge.element
    if element is None:
        return
    first = edge.points[0]
    after = next((p for p in edge.points[1:] if p != first), None)
    if after is None:
        return
    ux, uy = unit_vector(first, after)
    source = edge.source
    if source is not None and source.get("default") == edge.element_id:
        mx, my = first[0] + ux * 10, first[1] + uy * 10
        slash = svg_path(
            "M", mx - ux * 3 - uy * 6, my - uy * 3 + ux * 6, "L", mx + ux * 3 + uy * 6, my + uy * 3 - ux * 6
        )
        add(g, "path", {"d": slash, "class": "default-marker"} | LINE)
    elif (
        source is not None
        and etree.QName(source).localname in ACTIVITIES
        and element.find(f"{{{BPMN_NS}}}conditionExpression") is not None
    ):
        tip = (first[0] + ux * 14, first[1] + uy * 14)
        mid = (first[0] + ux * 7, first[1] + uy * 7)
        diamond = [first, (mid[0] - uy * 4, mid[1] + ux * 4), tip, (mid[0] + uy * 4, mid[1] - ux * 4)]
        add(g, "polygon", {"points": svg_points(diamond), "class": "condition-marker"} | LINE | {"fill": PAPER})
