"""Advance a workflow as far as it can go, and say precisely why when it cannot.

Wraps ``do_engine_steps`` with what a durable engine needs on top of SpiffWorkflow:
- a step budget, so a loop of script tasks without a wait state ends in an incident instead
  of holding the instance (and its database lock) forever;
- history pruning during long engine-only runs (see :mod:`engine.compaction`);
- due timers run in the same advance (``do_engine_steps`` only refreshes timers at its end);
- stall detection: if work is left that SpiffWorkflow will not pick up, that is an incident;
- failures unwrapped into an :class:`Failure` naming task, element, line and the real message
  (SpiffWorkflow hides the original error in ``__context__``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.exceptions import SpiffWorkflowException, WorkflowException
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from .compaction import prune_history
from .errors import ScriptError

PRUNE_EVERY = 100  # engine steps between prunings inside one advance


class StepLimitExceeded(Exception):
    """Raised from inside the engine loop when an advance takes too many steps."""

    def __init__(self, task, limit: int):
        super().__init__(
            f"stopped after {limit} engine steps without reaching a wait state (an endless loop of automatic tasks?)"
        )
        self.task = task


@dataclass
class Failure:
    """Why an advance stopped: becomes an incident."""

    kind: str
    message: str
    task: object | None = None
    element_id: str | None = None
    line: int | None = None
    details: str | None = None


def all_tasks(workflow):
    """Every task of the workflow and its subprocesses, without the depth-limited iterator."""
    yield from workflow.tasks.values()
    for sub in workflow.subprocesses.values():
        yield from sub.tasks.values()


def workflow_completed(workflow) -> bool:
    """``workflow.is_completed()``, answered from the task map: the library walks the task tree
    with an iterator (and a depth limit) to find an unfinished task, on every call."""
    if workflow.completed:
        return True
    unfinished = TaskState.NOT_FINISHED_MASK
    return not any(task._state & unfinished for task in workflow.tasks.values())


def advance(workflow, *, step_limit: int, on_step: Callable | None = None) -> Failure | None:
    """Run automatic work until only human tasks, waits or the end remain."""
    steps = 0

    def will_complete(task):
        nonlocal steps
        steps += 1
        if steps > step_limit:
            raise StepLimitExceeded(task, step_limit)

    def did_complete(task):
        if on_step is not None:
            on_step(task)
        if steps % PRUNE_EVERY == 0:
            prune_history(workflow)

    try:
        while True:
            workflow.refresh_timers()
            workflow.do_engine_steps(will_complete_task=will_complete, did_complete_task=did_complete)
            if not _automatic_ready(workflow):
                break
            if steps > step_limit:  # pragma: no cover - the callback raises first
                break
    except StepLimitExceeded as exc:
        _mark_error(exc.task)
        return _failure("step_limit", str(exc), exc.task)
    except Exception as exc:  # noqa: BLE001 - every failure of user content becomes an incident
        return describe_failure(workflow, exc)
    finally:
        prune_history(workflow)
    return detect_stall(workflow)


def _automatic_ready(workflow) -> list:
    return [t for t in all_tasks(workflow) if t.state == TaskState.READY and not t.task_spec.manual]


def _mark_error(task) -> None:
    if task is not None and not task.has_state(TaskState.FINISHED_MASK):
        task._set_state(TaskState.ERROR)


LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED | TaskState.ERROR


def detect_stall(workflow) -> Failure | None:
    """A running workflow must have something to wait for; otherwise report where it is stuck."""
    waiting = False
    for task in all_tasks(workflow):
        state = task._state
        if state == TaskState.READY and not task.task_spec.manual:
            return _failure("stall", "the engine stopped advancing with automatic work left", task)
        waiting = waiting or bool(state & LIVE)
    if waiting or workflow_completed(workflow):
        return None
    return _failure("stall", "the process has nothing left to do or wait for, but has not reached an end event")


def describe_failure(workflow, exc: BaseException) -> Failure:
    """Turn an exception from SpiffWorkflow (or our sandbox) into a precise Failure."""
    task = getattr(exc, "task", None)
    if task is None:
        task = next((t for t in all_tasks(workflow) if t.state == TaskState.ERROR), None)
    if task is None:  # e.g. a timer whose value is not a date or duration: found by its hook's frame
        task = _task_in_traceback(exc)
    _mark_error(task)  # SpiffWorkflow marks failed scripts, not failed event definitions: retry finds it
    original = _original(exc)
    line = getattr(exc, "line_number", None) or getattr(original, "line", None) or None
    kind = (
        "script_error"
        if isinstance(exc, WorkflowTaskException) or isinstance(original, ScriptError)
        else "engine_error"
    )
    message = _message(exc, original)
    timer = _timer_expression(task)
    if timer is not None:
        message = f"timer {timer!r}: {message}"
    failure = _failure(kind, message, task, line=line)
    failure.details = _details(exc)
    phase = script_phase(exc)
    if phase:
        failure.details = f"phase: {phase}" + (f"\n{failure.details}" if failure.details else "")
    return failure


def _task_in_traceback(exc: BaseException):
    """The innermost SpiffWorkflow task the failing code worked on (the ``my_task`` argument
    every task-spec hook takes), for errors that do not name their task."""
    found = None
    traceback = exc.__traceback__
    while traceback is not None:
        candidate = traceback.tb_frame.f_locals.get("my_task")
        if isinstance(candidate, Task):
            found = candidate
        traceback = traceback.tb_next
    return found


def _timer_expression(task) -> str | None:
    definition = getattr(getattr(task, "task_spec", None), "event_definition", None)
    return definition.expression if isinstance(definition, TimerEventDefinition) else None


def script_phase(exc: BaseException) -> str | None:
    """Which script of a task failed: SpiffWorkflow notes it on the exception."""
    notes = list(getattr(exc, "notes", None) or []) + list(getattr(exc, "__notes__", None) or [])
    text = " ".join(str(n) for n in notes)
    if "Pre-Script" in text:
        return "pre-script"
    if "Post-Script" in text:
        return "post-script"
    return None


def _failure(kind: str, message: str, task=None, line: int | None = None) -> Failure:
    element = getattr(getattr(task, "task_spec", None), "bpmn_id", None)
    return Failure(kind=kind, message=message, task=task, element_id=element, line=line)


def _original(exc: BaseException) -> BaseException:
    """Follow __cause__/__context__ to the error that started it (the library hides it there),
    but not past an error raised ``from None`` (its author chose the message to show)."""
    seen = exc
    while True:
        inner = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
        if inner is None or inner is seen:
            return seen
        seen = inner


def _message(exc: BaseException, original: BaseException) -> str:
    if isinstance(original, ScriptError):
        return original.message
    if original is not exc and not isinstance(original, SpiffWorkflowException):
        text = str(original) or type(original).__name__
        return f"{type(original).__name__}: {text}" if type(original).__name__ not in text else text
    text = str(exc).strip().rstrip(".").strip()
    if isinstance(exc, WorkflowException) and not text:
        return type(exc).__name__
    return text


def _details(exc: BaseException) -> str | None:
    parts = []
    error_line = getattr(exc, "error_line", None)
    if error_line:
        parts.append(f"at: {error_line.strip()}")
    trace = getattr(exc, "task_trace", None)
    if trace:
        parts.append("call stack: " + " <- ".join(trace))
    return "\n".join(parts) or None
