"""What the inbox needs to know about a READY user/manual task, read from its BPMN element.

The candidate group is the BPMN lane name (a ``candidateGroup`` property overrides it); the
title is the element name; ``priority`` (integer, default 50), ``dueIn`` (ISO 8601 duration,
e.g. ``P2D``) and ``followUpIn`` come from ``spiffworkflow:property`` elements; the form is
the spiff ``formJsonSchemaFilename`` property. ``assignment="auto"`` or ``requiredSkills``
(comma-separated) ask for an assignee chosen by the ``choose_assignee`` hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.util.task import TaskState

from .runner import all_tasks

DEFAULT_PRIORITY = 50


@dataclass(slots=True)
class HumanTaskInfo:
    """What the inbox row of a new task holds; made by :func:`describe` for one transition,
    which then applies the priority and assignment hooks to it before inserting the row."""

    spiff_task_id: str
    element_id: str
    title: str
    candidate_group: str | None
    priority: int
    due_at: datetime | None
    follow_up_at: datetime | None
    form: str | None
    instructions: str | None
    required_skills: tuple[str, ...] = ()
    auto_assign: bool = False
    assignee: str | None = None


def properties(task_spec) -> dict:
    return (getattr(task_spec, "extensions", None) or {}).get("properties", {}) or {}


def ready_human_tasks(workflow) -> dict[str, object]:
    """READY manual tasks (user, manual, plain bpmn:task) of the workflow and its subprocesses."""
    return {str(t.id): t for t in all_tasks(workflow) if t.state == TaskState.READY and t.task_spec.manual}


def describe(task, now: datetime) -> HumanTaskInfo:
    spec = task.task_spec
    props = properties(spec)
    extensions = getattr(spec, "extensions", None) or {}
    return HumanTaskInfo(
        spiff_task_id=str(task.id),
        element_id=spec.bpmn_id,
        title=(spec.bpmn_name or spec.bpmn_id)[:500],
        candidate_group=props.get("candidateGroup") or spec.lane,
        priority=_int(props.get("priority"), DEFAULT_PRIORITY),
        due_at=_after(now, props.get("dueIn")),
        follow_up_at=_after(now, props.get("followUpIn")),
        form=props.get("formJsonSchemaFilename"),
        instructions=extensions.get("instructionsForEndUser") or spec.documentation,
        required_skills=_skills(props.get("requiredSkills")),
        auto_assign=props.get("assignment") == "auto" or bool(props.get("requiredSkills")),
    )


def _skills(raw: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (raw or "").split(",") if s.strip())


def _int(raw, default: int) -> int:
    try:
        return int(raw) if raw not in (None, "") else default
    except ValueError:
        return default


def _after(now: datetime, duration: str | None) -> datetime | None:
    if not duration:
        return None
    return now + TimerEventDefinition.get_timedelta_from_start(TimerEventDefinition.parse_iso_duration(duration), now)
