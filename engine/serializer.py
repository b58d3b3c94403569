"""Instance state <-> JSON, with the process spec stored once per definition version.

SpiffWorkflow's serializer embeds the whole spec in every instance document (more than half
of its size). Here the spec is serialized once into ``definitions.spec`` and instance state
holds only the task tree, data and events; on load the already-built spec objects are handed
to the converter (``registry.restore`` passes non-dict objects through unchanged).
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import VERSION
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

from . import jsonutil
from .errors import SdfError
from .servicetasks import SERIALIZER_CONFIG

STATE_FORMAT = f"sdf-2/spiff-{VERSION}"
# formats this engine still reads (rows written by earlier releases); it writes only STATE_FORMAT
READABLE_FORMATS = (STATE_FORMAT, f"sdf-1/spiff-{VERSION}")


class SpecFreeWorkflowConverter(BpmnWorkflowConverter):
    """Writes a workflow without its spec; reading expects the caller to supply the spec objects.

    The tasks of the top workflow are written by :func:`compact_tasks` as short lists instead
    of SpiffWorkflow's eleven-key dictionaries: this runs on every change of every instance,
    and the compact form is a third of the size and half the time to build and encode.
    :func:`expand_tasks` turns them back into exactly what SpiffWorkflow's ``TaskConverter``
    writes (a test compares the two), so reading goes through the library's own converters.
    """

    def to_dict(self, workflow):
        dct = {
            "data": self.registry.convert(self.registry.clean(workflow.data)),
            "correlations": workflow.correlations,
            "last_task": str(workflow.last_task.id) if workflow.last_task is not None else None,
            "success": workflow.success,
            "completed": workflow.completed,
            "tasks": compact_tasks(workflow, self.registry.clean),
            "root": uuid_text(workflow.task_tree.id),
        }
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct


_UUID_TEXT: dict = {}
_UUID_TEXT_LIMIT = 200_000


def uuid_text(value) -> str:
    """``str(uuid)`` is slow (~1 us) and every task id is written several times per save."""
    text = _UUID_TEXT.get(value)
    if text is None:
        if len(_UUID_TEXT) >= _UUID_TEXT_LIMIT:
            _UUID_TEXT.clear()
        text = _UUID_TEXT[value] = str(value)
    return text


def compact_tasks(workflow, clean) -> list:
    """The task tree as ``[id, state, task spec name, last state change, [child ids], extra?]``.

    ``extra`` is left out when empty; it holds only what differs from the usual: ``triggered``
    (when true), ``internal_data`` (when not empty), and the task's data, written as
    SpiffWorkflow writes it: in full (``data``) for a task without a parent, else as a delta
    against the parent (``updates``, ``deletions``). A task's parent is the task that lists it
    among its children; should a task ever disagree with that, ``parent`` is written too.
    """
    tasks = workflow.tasks
    entries = []
    for tid, task in tasks.items():
        entry = [
            uuid_text(tid),
            task._state,
            task.task_spec.name,
            task.last_state_change,
            [uuid_text(child) for child in task._children],
        ]
        extra = {}
        if task.triggered:
            extra["triggered"] = True
        if task.internal_data:
            extra["internal_data"] = clean(task.internal_data)
        parent = tasks.get(task._parent)
        if parent is None:
            if task.data:
                extra["data"] = task.data
        else:
            if tid not in parent._children:
                extra["parent"] = uuid_text(parent.id)
            own, inherited = task.data, parent.data
            if own != inherited:
                updates = {k: v for k, v in own.items() if k not in inherited or v != inherited[k]}
                if updates:
                    extra["updates"] = updates
                deletions = [k for k in inherited if k not in own]
                if deletions:
                    extra["deletions"] = deletions
        if extra:
            entry.append(extra)
        entries.append(entry)
    return entries


def expand_tasks(entries: list) -> dict:
    """:func:`compact_tasks`' lists back into SpiffWorkflow's task dictionaries, keyed by id."""
    parents = {child: entry[0] for entry in entries for child in entry[4]}
    expanded = {}
    for entry in entries:
        tid, state, spec_name, changed, children = entry[:5]
        extra = entry[5] if len(entry) > 5 else {}
        parent = extra.get("parent") or parents.get(tid)
        expanded[tid] = {
            "id": tid,
            "parent": parent,
            "children": children,
            "last_state_change": changed,
            "state": state,
            "task_spec": spec_name,
            "triggered": extra.get("triggered", False),
            "internal_data": extra.get("internal_data", {}),
            "data": extra.get("data", {}) if parent is None else {},
            "delta": {}
            if parent is None
            else {"updates": extra.get("updates", {}), "deletions": extra.get("deletions", [])},
            "typename": "Task",
        }
    return expanded


def _register_data_types(registry) -> None:
    """Value types scripts can create (the sandbox offers Decimal and date) beyond SpiffWorkflow's own."""
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda d: Decimal(d["value"]), typename="Decimal")
    registry.register(
        date, lambda v: {"value": v.isoformat()}, lambda d: date.fromisoformat(d["value"]), typename="date"
    )


class StateSerializer:
    """Serializes specs and spec-free instance state with one shared converter registry."""

    def __init__(self, extra_config: dict | None = None):
        config = dict(SPIFF_CONFIG)
        config.update(SERIALIZER_CONFIG)
        config.update(extra_config or {})
        config[BpmnWorkflow] = SpecFreeWorkflowConverter
        registry = BpmnWorkflowSerializer.configure(config)
        _register_data_types(registry)
        self._serializer = BpmnWorkflowSerializer(registry)
        self._registry = self._serializer.registry
        self._generic = SpecFreeWorkflowConverter(BpmnWorkflow, self._registry)
        # SpiffWorkflow's encoder: its default() writes typed values (dates, Decimal...) as the
        # registry's {"typename": ...} dictionaries; the fallback for what orjson declines
        self._encoder = self._serializer._encoder_cls(separators=(",", ":"))

    def dump_state_generic(self, workflow: BpmnWorkflow) -> str:
        """The same state through SpiffWorkflow's own converters, with the tasks as the library
        writes them: the reference for tests, and the document earlier releases stored (sdf-1)."""
        registry = self._registry
        registry._encoder_mode = True
        try:
            dct = registry.convert(workflow)
            dct["tasks"] = self._generic.mapping_to_dict(workflow.tasks)
            dct["format"] = READABLE_FORMATS[1]
            return json.dumps(dct, cls=self._serializer._encoder_cls, separators=(",", ":"))
        finally:
            registry._encoder_mode = False

    def dump_state(self, workflow: BpmnWorkflow) -> str:
        registry = self._registry
        registry._encoder_mode = True
        try:
            dct = registry.convert(workflow)
            dct["format"] = STATE_FORMAT
            return jsonutil.encode(dct, self._encoder.default, self._encoder)
        finally:
            registry._encoder_mode = False

    def state_document(self, text: str) -> dict:
        """Stored state as SpiffWorkflow's dictionaries (compact tasks expanded), format checked."""
        dct = jsonutil.decode(text)
        found = dct.pop("format", None)
        if found not in READABLE_FORMATS:
            raise SdfError(f"instance state has format {found!r}; this engine reads {', '.join(READABLE_FORMATS)}")
        if isinstance(dct["tasks"], list):
            dct["tasks"] = expand_tasks(dct["tasks"])
        return dct

    def load_state(self, text: str, spec, subprocess_specs: dict) -> BpmnWorkflow:
        dct = self.state_document(text)
        dct["spec"] = spec
        dct["subprocess_specs"] = dict(subprocess_specs)
        return self._registry.restore(dct)

    def dump_spec(self, spec, subprocess_specs: dict) -> dict:
        return {
            "spec": self._registry.convert(spec),
            "subprocess_specs": {name: self._registry.convert(s) for name, s in subprocess_specs.items()},
        }

    def load_spec(self, dct: dict):
        spec = self._registry.restore(dct["spec"])
        subs = {name: self._registry.restore(s) for name, s in dct["subprocess_specs"].items()}
        return spec, subs
