"""Asynchronous service tasks: the instance waits while a background job calls the operator.

SpiffWorkflow's spiff ``ServiceTask`` calls its operator synchronously inside
``do_engine_steps`` (and hides errors behind a ``NameError``, see the research notes). Here the
task records the call it wants to make (operator and evaluated parameters) and returns
``None``, which leaves it STARTED: the transition then writes the call to the outbox in the
same transaction, and a job performs it, completes the task with the result and advances
the instance. Boundary events on the task keep waiting meanwhile, so a timer can still
interrupt a slow call.
"""

from __future__ import annotations

import uuid

from SpiffWorkflow.bpmn.parser.util import full_tag
from SpiffWorkflow.spiff.parser.task_spec import ServiceTaskParser
from SpiffWorkflow.spiff.serializer.task_spec import ServiceTaskConverter
from SpiffWorkflow.spiff.specs.defaults import ServiceTask
from SpiffWorkflow.util.task import TaskState

REQUEST_KEY = "service_request"
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_SECONDS = 2


class AsyncServiceTask(ServiceTask):
    """A service task whose call is made by a job, not inside the engine step."""

    def _execute(self, my_task):
        params = {name: p["value"] for name, p in self.evaluate_params(my_task).items()}
        my_task.internal_data[REQUEST_KEY] = {
            "operator": self.operation_name,
            "params": params,
            "key": uuid.uuid4().hex,  # idempotency key: the same for every retry of this call
        }
        return None  # -> STARTED until the job completes it

    @property
    def max_attempts(self) -> int:
        return 1 + (DEFAULT_RETRIES if self.retries is None else max(0, int(self.retries)))

    @property
    def backoff_seconds(self) -> float:
        return DEFAULT_BACKOFF_SECONDS if self.retry_backoff_base is None else float(self.retry_backoff_base)


PARSER_OVERRIDES = {full_tag("serviceTask"): (ServiceTaskParser, AsyncServiceTask)}
SERIALIZER_CONFIG = {AsyncServiceTask: ServiceTaskConverter}


def pending_calls(workflow, definition) -> dict[str, object]:
    """STARTED service tasks (and their subprocesses'), keyed by task id: calls not yet made."""
    if not definition.has_service_tasks:
        return {}
    from .runner import all_tasks

    return {
        str(t.id): t
        for t in all_tasks(workflow)
        if t.state == TaskState.STARTED and isinstance(t.task_spec, AsyncServiceTask)
    }
