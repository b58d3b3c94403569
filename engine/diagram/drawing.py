"""The SVG document: layers, where names and labels go, and the view box around it all.

One layer per kind of element keeps pools under lanes, tasks over containers, and labels on
top. Names inside a shape are wrapped to fit it; the labels of events, gateways, data and
flows go to their DI label bounds when the modeler saved some, else to the candidate spot least
crowded by flows, shapes and labels already placed. Each drawn element is a ``<g>`` with
``data-element-id`` and ``data-element-type``; lxml escapes every name taken from the file.
"""

from __future__ import annotations

import math

from lxml import etree

from .geometry import (
    BASELINE,
    CHAR_WIDTH,
    FONT_SIZE,
    LINE_HEIGHT,
    SVG_NS,
    Box,
    Edge,
    Point,
    Shape,
    add,
    fit,
    fmt,
    overlap,
    rect,
    segment_hits,
    svg_path,
    text_box,
    wrap,
)
from .notation import (
    ACTIVITIES,
    DATA,
    EVENTS,
    GATEWAYS,
    INK,
    LINE,
    PAPER,
    TASK_MARKERS,
    bottom_markers,
    draw_activity,
    draw_data,
    draw_edge,
    draw_event,
    draw_gateway,
)
from .reading import name_of

MARGIN = 20
BAND = 30  # width of the name band of pools and lanes
LABEL_WIDTH = 90  # width of the label of an event, gateway or data element (as bpmn-js)
FLOW_LABEL_WIDTH = 110
BAND_FILL = "#f3f4f6"
LAYERS = ("pools", "lanes", "containers", "nodes", "edges", "attached", "labels")
CROSSING_PENALTY = 400  # a flow through a label costs as much as covering 400 px2 of a shape or label
PREFERENCE = 50  # the cost of taking the next candidate spot instead of the preferred one
CONTAINERS = {"participant", "lane", "group", "subProcess", "transaction", "adHocSubProcess"}


class Drawing:
    """Builds the SVG tree: one layer per kind of element, so pools stay under tasks and labels on top."""

    def __init__(self, shapes: list[Shape], edges: list[Edge], title: str):
        self.shapes, self.edges = shapes, edges
        self.extent: list[Box] = []
        self.taken: list[Box] = []  # labels already placed, so the next ones avoid them
        self.root = etree.Element(f"{{{SVG_NS}}}svg", nsmap={None: SVG_NS})
        for key in ("width", "height", "viewBox"):
            self.root.set(key, "0")
        self.root.set("role", "img")
        self.root.set("font-family", "Arial, Helvetica, sans-serif")
        self.root.set("font-size", str(FONT_SIZE))
        add(self.root, "title", text=title)
        self.background = add(self.root, "rect", {"class": "background", "fill": PAPER})  # readable on dark pages
        self.layers = {name: add(self.root, "g", {"class": f"layer-{name}"}) for name in LAYERS}

    def svg(self) -> str:
        for shape in self.shapes:
            self._draw_shape(shape)
        for edge in self.edges:
            self._draw_edge(edge)
        self._set_view_box()
        etree.indent(self.root, space="  ")
        for text in self.root.iter(f"{{{SVG_NS}}}text"):  # whitespace between tspans would be drawn
            text.text = None
            for tspan in text:
                tspan.tail = None
        return etree.tostring(self.root, encoding="unicode") + "\n"

    def _set_view_box(self) -> None:
        boxes = self.extent or [Box(0, 0, 100, 100)]
        x = min(b.x for b in boxes) - MARGIN
        y = min(b.y for b in boxes) - MARGIN
        w = max(b.right for b in boxes) + MARGIN - x
        h = max(b.bottom for b in boxes) + MARGIN - y
        self.root.set("viewBox", svg_path(x, y, w, h))
        for key, value in rect(Box(x, y, w, h)).items():
            self.background.set(key, fmt(value))
        self.root.set("width", fmt(w))
        self.root.set("height", fmt(h))

    def group(self, layer: str, item, css: str) -> etree._Element:
        attrs = {"class": css, "data-element-id": item.element_id, "data-element-type": item.kind}
        return add(self.layers[layer], "g", attrs)

    # -- shapes
    def _draw_shape(self, shape: Shape) -> None:
        self.extent.append(shape.box)
        kind = shape.kind
        if kind == "participant":
            self._pool(shape)
        elif kind == "lane":
            self._band(self.group("lanes", shape, "lane"), shape, rect(shape.box))
        elif kind in ACTIVITIES:
            self._activity(shape)
        elif kind in EVENTS:
            layer = "attached" if kind == "boundaryEvent" else "nodes"
            draw_event(self.group(layer, shape, f"event {kind}"), shape)
            self._external_label(shape)
        elif kind in GATEWAYS:
            draw_gateway(self.group("nodes", shape, f"gateway {kind}"), shape)
            self._external_label(shape)
        elif kind in DATA:
            draw_data(self.group("nodes", shape, f"data {kind}"), shape)
            self._external_label(shape)
        elif kind == "textAnnotation":
            self._annotation(shape)
        elif kind == "group":
            self._bpmn_group(shape)
        else:
            g = self.group("nodes", shape, "unknown")
            add(g, "rect", rect(shape.box) | {"fill": "none", "stroke": INK, "stroke-dasharray": "4,4"})

    def _pool(self, shape: Shape) -> None:
        g = self.group("pools", shape, "pool")
        if shape.element is not None and shape.element.get("processRef") is None:
            add(g, "rect", rect(shape.box) | {"fill": PAPER, "stroke": INK, "stroke-width": 1.5})
            lines = fit(wrap(name_of(shape), shape.box.w - 10), shape.box.h)
            self._lines(g, lines, text_box(lines, shape.box.cx, shape.box.cy - len(lines) * LINE_HEIGHT / 2))
            return
        self._band(g, shape, rect(shape.box) | {"stroke-width": 1.5})

    def _band(self, g, shape: Shape, outline: dict) -> None:
        """A pool or lane: its outline and its name in a band (left when horizontal, top when not)."""
        add(g, "rect", {"fill": PAPER, "stroke": INK} | outline)
        horizontal = shape.di.get("isHorizontal", "true") != "false"
        band = _band_box(shape)
        add(g, "rect", rect(band) | {"fill": BAND_FILL, "stroke": INK})
        length = band.h if horizontal else band.w
        lines = fit(wrap(name_of(shape), length - 10), BAND)
        box = text_box(lines, band.cx, band.cy - len(lines) * LINE_HEIGHT / 2)
        text = self._lines(g, lines, box, extend=False)  # inside the band, whichever way it is turned
        if horizontal and text is not None:
            text.set("transform", f"rotate(-90 {fmt(band.cx)} {fmt(band.cy)})")

    def _activity(self, shape: Shape) -> None:
        expanded = shape.kind in ("subProcess", "transaction", "adHocSubProcess") and (
            shape.di.get("isExpanded") == "true"
        )
        g = self.group("containers" if expanded else "nodes", shape, f"activity {shape.kind}")
        draw_activity(g, shape, expanded)
        box = shape.box
        if expanded:
            lines = fit(wrap(name_of(shape), box.w - 20), 2 * LINE_HEIGHT)
            self._lines(g, lines, Box(box.x + 10, box.y + 6, 0, 0), anchor="start")
            return
        lines = fit(wrap(name_of(shape), box.w - 10), box.h - 8)
        height = len(lines) * LINE_HEIGHT
        top = box.cy - height / 2
        if shape.kind in TASK_MARKERS and top < box.y + 26 <= box.bottom - 16 - height:
            top = box.y + 26  # clear the type marker in the top-left corner when there is room
        if bottom_markers(shape.element, shape.kind, expanded):
            top = max(min(top, box.bottom - 20 - height), box.y + 4)
        self._lines(g, lines, text_box(lines, box.cx, top))

    def _annotation(self, shape: Shape) -> None:
        g = self.group("attached", shape, "annotation")
        box = shape.box
        add(g, "path", {"d": svg_path("M", box.x + 10, box.y, "H", box.x, "V", box.bottom, "H", box.x + 10)} | LINE)
        lines = fit(wrap(name_of(shape), box.w - 10), box.h)
        self._lines(g, lines, Box(box.x + 5, box.y + 2, 0, 0), anchor="start")

    def _bpmn_group(self, shape: Shape) -> None:
        g = self.group("attached", shape, "group")
        outline = rect(shape.box) | {"rx": 10, "fill": "none", "stroke": INK, "stroke-dasharray": "10,5,2,5"}
        add(g, "rect", outline)
        lines = wrap(name_of(shape), shape.box.w - 20)
        self._lines(g, lines, text_box(lines, shape.box.cx, shape.box.y + 4))

    def _external_label(self, shape: Shape) -> None:
        """The name of an event, gateway or data element: at its DI label bounds, else below or above."""
        name = name_of(shape)
        if not name:
            return
        if shape.label_box is not None:
            lines = wrap(name, max(shape.label_box.w, CHAR_WIDTH * 4) + CHAR_WIDTH)
            box = text_box(lines, shape.label_box.cx, shape.label_box.y)
        else:
            lines = wrap(name, LABEL_WIDTH)
            height = len(lines) * LINE_HEIGHT
            width = max(len(line) for line in lines) * CHAR_WIDTH
            box = shape.box
            candidates = [  # in order of preference: below is where modelers put it
                text_box(lines, box.cx, box.bottom + 4),
                text_box(lines, box.cx, box.y - 4 - height),
                text_box(lines, box.cx + width / 4, box.bottom + 4),
                text_box(lines, box.cx - width / 4, box.bottom + 4),
                Box(box.cx + 10, box.bottom + 2, width, height),
                Box(box.cx - 10 - width, box.bottom + 2, width, height),
                Box(box.right + 4, box.cy - height / 2, width, height),
                Box(box.x - 4 - width, box.cy - height / 2, width, height),
            ]
            box = self._free_spot(candidates, exclude={shape.element_id})
        self._label(shape, lines, box)

    def _label(self, item, lines: list[str], box: Box, anchor: str = "middle") -> None:
        g = add(self.layers["labels"], "g", {"class": "label", "data-label-for": item.element_id})
        backdrop = Box(box.x - 2, box.y, box.w + 4, box.h)  # keeps the text readable where a flow crosses it
        add(g, "rect", rect(backdrop) | {"fill": PAPER, "fill-opacity": 0.85})
        self._lines(g, lines, box, anchor=anchor)
        self.taken.append(box)

    def _lines(self, parent, lines: list[str], box: Box, anchor: str = "middle", extend: bool = True):
        if not lines:
            return None
        if extend:
            self.extent.append(box)
        x = box.cx if anchor == "middle" else box.x
        text = add(parent, "text", {"text-anchor": anchor, "fill": INK})
        for i, line in enumerate(lines):
            add(text, "tspan", {"x": x, "y": box.y + BASELINE + i * LINE_HEIGHT}, text=line)
        return text

    def _free_spot(self, candidates: list[Box], exclude: set[str]) -> Box:
        """The candidate least covered by flows, nodes and placed labels (the earliest on a tie)."""
        costs = [self._crowding(box, exclude) + PREFERENCE * i for i, box in enumerate(candidates)]
        return candidates[costs.index(min(costs))]

    def _crowding(self, box: Box, exclude: set[str]) -> float:
        crossings = sum(
            1
            for edge in self.edges
            if edge.element_id not in exclude
            for p, q in zip(edge.points, edge.points[1:], strict=False)
            if segment_hits(box, p, q)
        )
        return CROSSING_PENALTY * crossings + sum(overlap(box, other) for other in self._obstacles(exclude))

    def _obstacles(self, exclude: set[str]) -> list[Box]:
        """What a label should not cover: nodes, the name bands of pools and lanes, placed labels."""
        boxes = [s.box for s in self.shapes if s.element_id not in exclude and s.kind not in CONTAINERS]
        boxes += [_band_box(s) for s in self.shapes if s.kind in ("participant", "lane")]
        return boxes + self.taken

    # -- edges
    def _draw_edge(self, edge: Edge) -> None:
        if len(edge.points) < 2:
            return
        xs, ys = [p[0] for p in edge.points], [p[1] for p in edge.points]
        self.extent.append(Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)))
        g = self.group("edges", edge, f"edge {edge.kind}")
        draw_edge(g, edge)
        name = name_of(edge)
        if name:
            self._flow_label(edge, name)

    def _flow_label(self, edge: Edge, name: str) -> None:
        if edge.label_box is not None:
            lines = wrap(name, max(edge.label_box.w, CHAR_WIDTH * 4) + CHAR_WIDTH)
            self._label(edge, lines, text_box(lines, edge.label_box.cx, edge.label_box.y))
            return
        lines = wrap(name, FLOW_LABEL_WIDTH)
        size = (max(len(line) for line in lines) * CHAR_WIDTH, len(lines) * LINE_HEIGHT)
        segments = sorted(zip(edge.points, edge.points[1:], strict=False), key=lambda s: -math.dist(*s))
        candidates = [box for p, q in segments[:2] for box in _beside(p, q, *size)]
        self._label(edge, lines, self._free_spot(candidates, exclude={edge.element_id}))


def _band_box(shape: Shape) -> Box:
    """Where a pool or lane writes its name: a band on the left, or on top when it is vertical."""
    box = shape.box
    if shape.di.get("isHorizontal", "true") == "false":
        return Box(box.x, box.y, box.w, BAND)
    return Box(box.x, box.y, BAND, box.h)


def _beside(p: Point, q: Point, width: float, height: float) -> list[Box]:
    """Spots for a flow label at the middle of segment pq: above or below it, or right or left of it."""
    mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
    if abs(q[0] - p[0]) >= abs(q[1] - p[1]):
        return [Box(mx - width / 2, my - 4 - height, width, height), Box(mx - width / 2, my + 4, width, height)]
    return [Box(mx + 6, my - height / 2, width, height), Box(mx - 6 - width, my - height / 2, width, height)]
