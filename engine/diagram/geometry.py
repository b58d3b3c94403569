"""Boxes, points and text sizes: the geometry the diagram is drawn with, and its SVG numbers.

The reader turns BPMNDI bounds and waypoints into :class:`Box` and :class:`Point`, wrapped in a
:class:`Shape` or :class:`Edge`; the drawing measures names (no font is loaded, so a name's
width is estimated from its length) to wrap them and to find a free spot for a label. Numbers
are written with at most two decimals, which keeps the SVG deterministic and small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lxml import etree

SVG_NS = "http://www.w3.org/2000/svg"
FONT_SIZE = 12
CHAR_WIDTH = 6.5  # average advance of a 12px sans-serif character: enough to wrap names
LINE_HEIGHT = 14
BASELINE = 10.5  # from the top of a line box to its baseline

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in diagram coordinates."""

    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass
class Shape:
    """One BPMNShape with the semantic element it draws (None when the id is unknown)."""

    element_id: str
    kind: str
    element: etree._Element | None
    box: Box
    di: etree._Element
    label_box: Box | None


@dataclass
class Edge:
    """One BPMNEdge with its waypoints and the semantic flow or association it draws."""

    element_id: str
    kind: str
    element: etree._Element | None
    points: list[Point]
    label_box: Box | None
    source: etree._Element | None = None


# -- text ----------------------------------------------------------------------------------------
def wrap(text: str, width: float) -> list[str]:
    """Break text into lines that fit ``width`` pixels, at spaces, else after ``_`` or ``-``."""
    limit = max(1, int(width // CHAR_WIDTH))
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for word in paragraph.split():
            while len(word) > limit:
                if line:
                    lines.append(line)
                    line = ""
                cut = max(word.rfind("_", 0, limit), word.rfind("-", 0, limit)) + 1 or limit
                lines.append(word[:cut])
                word = word[cut:]
            candidate = f"{line} {word}" if line else word
            if len(candidate) <= limit:
                line = candidate
            else:
                lines.append(line)
                line = word
        if line:
            lines.append(line)
    return lines


def fit(lines: list[str], height: float) -> list[str]:
    """Keep the lines that fit ``height``; the last kept line ends with an ellipsis if some were cut."""
    room = max(1, int(height // LINE_HEIGHT))
    if len(lines) <= room:
        return lines
    return lines[: room - 1] + [lines[room - 1][:-1] + "\u2026"]


def text_box(lines: list[str], cx: float, top: float) -> Box:
    """The box that lines of text take when centred on ``cx`` below ``top``."""
    width = max((len(line) for line in lines), default=0) * CHAR_WIDTH
    return Box(cx - width / 2, top, width, len(lines) * LINE_HEIGHT)


# -- geometry ------------------------------------------------------------------------------------
def fmt(value: float) -> str:
    """A number as SVG writes it here: at most two decimals, no trailing zeros, never ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def svg_path(*parts) -> str:
    """Path data from commands and numbers: ``svg_path("M", 1, 2, "H", 5)`` is ``"M 1 2 H 5"``."""
    return " ".join(fmt(p) if isinstance(p, int | float) else p for p in parts)


def svg_points(points) -> str:
    """The ``points`` attribute of a polyline or polygon."""
    return " ".join(f"{fmt(x)},{fmt(y)}" for x, y in points)


def unit_vector(a: Point, b: Point) -> Point:
    """The direction from a to b (to the right when they are the same point)."""
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    return ((b[0] - a[0]) / length, (b[1] - a[1]) / length) if length else (1.0, 0.0)


def segment_hits(box: Box, p: Point, q: Point) -> bool:
    """Whether segment pq crosses the box (Liang-Barsky clipping)."""
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for denom, dist in ((-dx, p[0] - box.x), (dx, box.right - p[0]), (-dy, p[1] - box.y), (dy, box.bottom - p[1])):
        if denom == 0:
            if dist < 0:
                return False
            continue
        t = dist / denom
        if denom < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def overlap(a: Box, b: Box) -> float:
    """The area two boxes share."""
    return max(0.0, min(a.right, b.right) - max(a.x, b.x)) * max(0.0, min(a.bottom, b.bottom) - max(a.y, b.y))


# -- SVG elements --------------------------------------------------------------------------------
def add(parent, tag: str, attrs: dict | None = None, text: str | None = None) -> etree._Element:
    """Append an SVG element; numbers are written with at most two decimals."""
    element = etree.SubElement(parent, f"{{{SVG_NS}}}{tag}")
    for key, value in (attrs or {}).items():
        element.set(key, fmt(value) if isinstance(value, int | float) else str(value))
    if text is not None:
        element.text = text
    return element


def rect(box: Box) -> dict:
    """The attributes of an SVG ``rect`` covering the box."""
    return {"x": box.x, "y": box.y, "width": box.w, "height": box.h}
