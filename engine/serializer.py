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

from .errors import SdfError
from .servicetasks import SERIALIZER_CONFIG

STATE_FORMAT = f"sdf-1/spiff-{VERSION}"


class SpecFreeWorkflowConverter(BpmnWorkflowConverter):
    """Writes a workflow without its spec; reading expects the caller to supply the spec objects.

    The task dictionaries of the top workflow are built by :func:`task_dict`, which produces
    exactly what SpiffWorkflow's ``TaskConverter`` produces in encoder mode (a test compares
    the two) at a third of the cost: this runs on every change of every instance.
    """

    def to_dict(self, workflow):
        dct = {
            "data": self.registry.convert(self.registry.clean(workflow.data)),
            "correlations": workflow.correlations,
            "last_task": str(workflow.last_task.id) if workflow.last_task is not None else None,
            "success": workflow.success,
            "completed": workflow.completed,
            "tasks": tasks_dict(workflow, self.registry.clean),
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


def tasks_dict(workflow, clean) -> dict:
    tasks = workflow.tasks
    return {uuid_text(tid): task_dict(task, tasks.get(task._parent), clean) for tid, task in tasks.items()}


def task_dict(task, parent, clean) -> dict:
    """One task as SpiffWorkflow's TaskConverter writes it (data as a delta against the parent)."""
    if parent is None:
        data, delta = task.data, {}
    else:
        own, inherited = task.data, parent.data
        data = {}
        delta = {
            "updates": {k: v for k, v in own.items() if k not in inherited or v != inherited[k]},
            "deletions": [k for k in inherited if k not in own],
        }
    return {
        "id": uuid_text(task.id),
        "parent": uuid_text(task._parent) if parent is not None else None,
        "children": [uuid_text(child) for child in task._children],
        "last_state_change": task.last_state_change,
        "state": task._state,
        "task_spec": task.task_spec.name,
        "triggered": task.triggered,
        "internal_data": clean(task.internal_data),
        "data": data,
        "delta": delta,
        "typename": "Task",
    }


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

    def dump_state_generic(self, workflow: BpmnWorkflow) -> str:
        """The same document through SpiffWorkflow's own converters (the reference for tests)."""
        registry = self._registry
        registry._encoder_mode = True
        try:
            dct = registry.convert(workflow)
            dct["tasks"] = self._generic.mapping_to_dict(workflow.tasks)
            dct["format"] = STATE_FORMAT
            return json.dumps(dct, cls=self._serializer._encoder_cls, separators=(",", ":"))
        finally:
            registry._encoder_mode = False

    def dump_state(self, workflow: BpmnWorkflow) -> str:
        registry = self._registry
        registry._encoder_mode = True
        try:
            dct = registry.convert(workflow)
            dct["format"] = STATE_FORMAT
            return json.dumps(dct, cls=self._serializer._encoder_cls, separators=(",", ":"))
        finally:
            registry._encoder_mode = False

    def load_state(self, text: str, spec, subprocess_specs: dict) -> BpmnWorkflow:
        dct = json.loads(text)
        found = dct.pop("format", None)
        if found != STATE_FORMAT:
            raise SdfError(f"instance state has format {found!r}; this engine reads {STATE_FORMAT!r}")
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
