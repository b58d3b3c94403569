"""Draw the diagram of a BPMN file as a standalone SVG picture (``sdf diagram``, the pictures in docs/).

Process designers and the docs need to *see* a process, and CI cannot run a browser modeler,
so this draws the BPMNDI (the shapes, waypoints and label positions a modeler saved in the
file) in the visual language of BPMN modelers. The output is deterministic (same input,
byte-identical SVG), so pictures kept in the docs can be compared with a fresh drawing in a test.

The package is split by concept: :mod:`.reading` loads the file and its DI plane,
:mod:`.geometry` holds boxes, points and text measures, :mod:`.notation` draws each kind of
BPMN element, and :mod:`.drawing` lays them out in one SVG document.
"""

from __future__ import annotations

import os

from .drawing import Drawing
from .geometry import wrap
from .reading import load, read_plane, title_of

__all__ = ["render_svg", "wrap"]


def render_svg(source: str | os.PathLike | bytes) -> str:
    """Draw the first diagram of a BPMN file (a path, or the file's bytes) as SVG text.

    Raises :class:`InvalidInput` when the file is missing, is not XML, or has no diagram
    information (a BPMN file written by hand or generated without BPMNDI).
    """
    root, name = load(source)
    shapes, edges = read_plane(root, name)
    return Drawing(shapes, edges, title_of(root)).svg()
