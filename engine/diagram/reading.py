"""Read a BPMN file's diagram: load the XML safely, then turn the first BPMNDI plane into shapes and edges.

The file comes from a user, so the parser resolves no entities and fetches nothing from the
network, and every problem (missing file, not XML, not BPMN, no diagram, a coordinate that is
not a number) is an :class:`InvalidInput` naming the file or line, for ``sdf diagram`` to print.
Each shape and edge keeps its semantic element, so the notation can read types and markers.
"""

from __future__ import annotations

import math
from pathlib import Path

from lxml import etree

from ..errors import InvalidInput
from .geometry import Box, Edge, Shape

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS = "http://www.omg.org/spec/DD/20100524/DI"


def load(source) -> tuple[etree._Element, str]:
    """The root of a BPMN file (a path or its bytes) and the name to use for it in errors."""
    if isinstance(source, bytes):
        content, name = source, "the BPMN document"
    else:
        path = Path(source)
        name = str(path)
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"{name}: cannot read the file: {exc.strerror or exc}") from exc
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(f"{name}: not well-formed XML: {exc}") from exc
    if root.tag != f"{{{BPMN_NS}}}definitions":
        raise InvalidInput(f"{name}: not a BPMN 2.0 file (the root element is not bpmn:definitions)")
    return root, name


def read_plane(root, name: str) -> tuple[list[Shape], list[Edge]]:
    """The shapes and edges of the first BPMNDI plane that has any."""
    semantic = {el.get("id"): el for el in root.iter(f"{{{BPMN_NS}}}*") if el.get("id")}
    for plane in root.iter(f"{{{BPMNDI_NS}}}BPMNPlane"):
        shapes = [_shape(di, semantic) for di in plane.iterchildren(f"{{{BPMNDI_NS}}}BPMNShape")]
        edges = [_edge(di, semantic) for di in plane.iterchildren(f"{{{BPMNDI_NS}}}BPMNEdge")]
        shapes = [s for s in shapes if s is not None]
        if shapes or edges:
            return shapes, edges
    raise InvalidInput(
        f"{name}: the file has no diagram information (BPMNDI shapes and edges), so there is nothing "
        "to draw; open it in a BPMN modeler and save it to add the layout"
    )


def _shape(di, semantic: dict) -> Shape | None:
    bounds = di.find(f"{{{DC_NS}}}Bounds")
    if bounds is None:
        return None
    element_id = di.get("bpmnElement") or di.get("id") or ""
    element = semantic.get(element_id)
    kind = etree.QName(element).localname if element is not None else "unknown"
    return Shape(element_id, kind, element, _box(bounds), di, _label_box(di))


def _edge(di, semantic: dict) -> Edge:
    element_id = di.get("bpmnElement") or di.get("id") or ""
    element = semantic.get(element_id)
    kind = etree.QName(element).localname if element is not None else "unknown"
    points = [(_num(p, "x"), _num(p, "y")) for p in di.iterchildren(f"{{{DI_NS}}}waypoint")]
    source = semantic.get(element.get("sourceRef")) if element is not None else None
    return Edge(element_id, kind, element, points, _label_box(di), source)


def _label_box(di) -> Box | None:
    bounds = di.find(f"{{{BPMNDI_NS}}}BPMNLabel/{{{DC_NS}}}Bounds")
    return _box(bounds) if bounds is not None else None


def _box(bounds) -> Box:
    return Box(_num(bounds, "x"), _num(bounds, "y"), _num(bounds, "width"), _num(bounds, "height"))


def _num(element, attribute: str) -> float:
    try:
        value = float(element.get(attribute, "0"))
    except ValueError as exc:
        line = element.sourceline
        raise InvalidInput(f"line {line}: {attribute}={element.get(attribute)!r} is not a number") from exc
    if not math.isfinite(value):
        raise InvalidInput(f"line {element.sourceline}: {attribute}={element.get(attribute)!r} is not a number")
    return value


def title_of(root) -> str:
    """The picture's title: the names of the pools and processes, else "BPMN diagram"."""
    names = [el.get("name") for el in root.iter(f"{{{BPMN_NS}}}participant", f"{{{BPMN_NS}}}process")]
    unique = list(dict.fromkeys(n for n in names if n))
    return ", ".join(unique) or "BPMN diagram"


def name_of(shape_or_edge) -> str:
    """The text a modeler shows for an element: its name, an annotation's text, a group's category."""
    element = shape_or_edge.element
    if element is None:
        return ""
    if shape_or_edge.kind == "textAnnotation":
        text = element.find(f"{{{BPMN_NS}}}text")
        return (text.text or "") if text is not None else ""
    if shape_or_edge.kind == "group":
        wanted = element.get("categoryValueRef")
        values = element.getroottree().getroot().iter(f"{{{BPMN_NS}}}categoryValue")
        return next((v.get("value") or "" for v in values if v.get("id") == wanted), "")
    return element.get("name") or ""
