"""Instance state <-> JSON, with the process spec stored once per definition version.

SpiffWorkflow's serializer embeds the whole spec in every instance document (more than half
of its size). Here the spec is serialized once into ``definitions.spec`` and instance state
holds only the task tree, data and events; on load the already-built spec objects are handed
to the converter (``registry.restore`` passes non-dict objects through unchanged).
"""

from __future__ import annotations

import json

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import VERSION
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

from .errors import SdfError

STATE_FORMAT = f"sdf-1/spiff-{VERSION}"


class SpecFreeWorkflowConverter(BpmnWorkflowConverter):
    """Writes a workflow without its spec; reading expects the caller to supply the spec objects."""

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct


class StateSerializer:
    """Serializes specs and spec-free instance state with one shared converter registry."""

    def __init__(self, extra_config: dict | None = None):
        config = dict(SPIFF_CONFIG)
        config.update(extra_config or {})
        config[BpmnWorkflow] = SpecFreeWorkflowConverter
        self._serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))
        self._registry = self._serializer.registry

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
