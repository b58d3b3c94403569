"""Opening the one start event a new instance starts from, when its process has several.

SpiffWorkflow starts every start event of a process together (a split before them, a join
after them) and the first one to fire cancels the others. The engine always knows how an
instance starts (by hand, by this message, on this timer), and a plain start event beside a
message or timer start would otherwise fire at once and cancel the one that was meant. So
only the steps before the start events run, and the start events that do not fit are
cancelled.
"""

from __future__ import annotations

from collections.abc import Callable

from SpiffWorkflow.bpmn.specs.control import BpmnStartTask, StartEventSplit
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.util.task import TaskState


def start_events(spec) -> list:
    """The start event specs of a process spec."""
    return list(getattr(spec, "bpmn_start_events", []))


def open_only(workflow, keep: Callable[[object], bool]) -> None:
    """Run a new workflow up to its start events; cancel every start event ``keep`` refuses."""
    while task := next((t for t in workflow.get_tasks(state=TaskState.READY) if _before_start_events(t)), None):
        task.run()
    for task in workflow.get_tasks(state=TaskState.NOT_FINISHED_MASK, spec_class=StartEvent):
        if not keep(task.task_spec):
            task.cancel()


def _before_start_events(task) -> bool:
    return isinstance(task.task_spec, (BpmnStartTask, StartEventSplit))
