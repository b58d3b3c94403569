"""One change of one instance, done as a single locked and versioned transaction.

Every state change (start, complete a task, suspend, terminate, retry, fire a timer) goes
through :class:`Transition`: lock the instance row (``BEGIN IMMEDIATE`` on SQLite, ``SELECT
... FOR UPDATE`` on PostgreSQL), load the workflow (from the in-process cache when its
version matches the row), apply the change, advance the engine, then write the new state,
the inbox rows that changed, the audit events and any incident in the same transaction. The
UPDATE also compares ``lock_version``, so a writer that somehow raced ends with a conflict
instead of overwriting. SpiffWorkflow objects are not thread-safe: a cached workflow is taken
out of the cache while a transition uses it and put back only after a successful commit.
"""

from __future__ import annotations

import functools
from collections import OrderedDict, namedtuple
from dataclasses import dataclass, field
from datetime import datetime
from threading import Lock

import sqlalchemy as sa
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.util.task import TaskState

from . import assignment, audit, db, fastsql, humantasks, jsonutil, messages, outbox, servicetasks
from .audit import ENGINE_ACTOR, AuditEvent, EventType
from .errors import Conflict, NotFound
from .runner import Failure, advance, all_tasks, workflow_completed
from .schema import human_tasks, incidents
from .status import IncidentStatus, InstanceStatus, TaskStatus, task_is_active

_HEAD = "id, definition_id, process_id, business_key, status, lock_version, wake_at, started_by"
InstanceHead = namedtuple("InstanceHead", _HEAD.replace(",", ""))  # what a transition needs of the row
LOCK_INSTANCE = {
    "sqlite": fastsql.Statement(f"SELECT {_HEAD} FROM instances WHERE id = :instance_id"),
    "postgresql": fastsql.Statement(f"SELECT {_HEAD} FROM instances WHERE id = :instance_id FOR UPDATE"),
}
LOAD_STATE = fastsql.Statement("SELECT state FROM instances WHERE id = :instance_id")
_SAVE_INSTANCE: dict[tuple[str, ...], fastsql.Statement] = {}


def _save_statement(changed: tuple[str, ...]) -> fastsql.Statement:
    """The UPDATE of an instance row that also sets the indexed columns in ``changed``.

    An indexed column in the SET list costs SQLite a rewritten index page even when its value
    stays the same, so ``status`` and ``wake_at`` (and ``ended_at``) are set only when they change.
    """
    found = _SAVE_INSTANCE.get(changed)
    if found is None:
        extra = "".join(f", {column} = :{column}" for column in changed)
        found = _SAVE_INSTANCE[changed] = fastsql.Statement(
            "UPDATE instances SET lock_version = :new_version, state = :state, data = :data, updated_at = :updated_at"
            f"{extra} WHERE id = :b_id AND lock_version = :b_version"
        )
    return found


_OPTIONAL_COLUMNS = ("status", "ended_at", "wake_at")
INSERT_INSTANCE = fastsql.Statement("""
    INSERT INTO instances (definition_id, process_id, business_key, status, lock_version, state, data,
        started_by, started_at, updated_at, ended_at, wake_at)
    VALUES (:definition_id, :process_id, :business_key, :status, :lock_version, :state, :data,
        :started_by, :started_at, :updated_at, :ended_at, :wake_at)
    RETURNING id""")
MARK_COMPLETED = fastsql.Statement("""
    UPDATE human_tasks SET status = 'completed', completed_at = :completed_at, completed_by = :completed_by,
        assignee = COALESCE(assignee, :completed_by)
    WHERE id = :b_id AND status IN ('open', 'claimed')""")
INSERT_TASK = fastsql.Statement("""
    INSERT INTO human_tasks (instance_id, spiff_task_id, element_id, title, candidate_group, assignee, priority,
        due_at, follow_up_at, status, form, instructions, created_at, claimed_at)
    VALUES (:instance_id, :spiff_task_id, :element_id, :title, :candidate_group, :assignee, :priority,
        :due_at, :follow_up_at, :status, :form, :instructions, :created_at, :claimed_at)
    RETURNING id""")
OPEN_TASKS = (
    sa.select(human_tasks)
    .where(human_tasks.c.instance_id == sa.bindparam("instance_id"), task_is_active(human_tasks.c.status))
    .order_by(human_tasks.c.priority.desc(), human_tasks.c.id)
)
OPEN_INCIDENT = (
    sa.select(incidents.c.id)
    .where(incidents.c.instance_id == sa.bindparam("instance_id"), incidents.c.status == IncidentStatus.OPEN.value)
    .limit(1)
)


class WorkflowCache:
    """Recently used workflow objects keyed by instance id and row version."""

    def __init__(self, size: int = 512):
        self._items: OrderedDict[int, tuple[int, object]] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def take(self, instance_id: int, version: int):
        with self._lock:
            found = self._items.pop(instance_id, None)
        return found[1] if found is not None and found[0] == version else None

    def put(self, instance_id: int, version: int, workflow) -> None:
        with self._lock:
            self._items[instance_id] = (version, workflow)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop(self, instance_id: int) -> None:
        with self._lock:
            self._items.pop(instance_id, None)


@dataclass
class Transition:
    """The working set of one change: what is read, and what will be written."""

    engine: object
    conn: object
    row: object
    definition: object
    workflow: object
    actor: str | None
    now: datetime
    events: list[AuditEvent] = field(default_factory=list)
    human_before: dict = field(default_factory=dict)
    human_after: dict = field(default_factory=dict)  # READY human tasks when the change is saved
    failure: Failure | None = None
    saved_status: InstanceStatus | None = None
    saved_data_text: str | None = None
    status_override: InstanceStatus | None = None
    completed_task: tuple | None = None  # (row id, actor, data) of the human task completed here
    completed_spiff_id: str | None = None
    new_tasks: list = field(default_factory=list)  # (row id, HumanTaskInfo) inserted by this transition
    calls_before: dict = field(default_factory=dict)  # service calls pending when the transition opened

    @property
    def instance_id(self) -> int:
        return self.row.id

    def after_commit(self, callback) -> None:
        """Run ``callback()`` once this transition's transaction has committed (never on rollback)."""
        db.after_commit(self.conn, callback)

    def record(
        self,
        type_: str,
        *,
        element_id: str | None = None,
        task_id: int | None = None,
        data: dict | None = None,
        actor: str | None = None,
    ) -> None:
        self.events.append(
            AuditEvent(
                type_,
                self.now,
                self.instance_id,
                task_id,
                element_id,
                actor if actor is not None else self.actor,
                data or {},
            )
        )

    def run_engine(self) -> None:
        """Advance the workflow; a failure is kept and becomes an incident on save."""
        if self.failure is None:
            self.failure = advance(
                self.workflow, step_limit=self.engine.settings.engine_step_limit, on_step=self._on_step
            )

    def _on_step(self, task) -> None:
        spec = task.task_spec
        if spec.manual or not getattr(spec, "bpmn_id", None):
            return
        # a split between BPMN elements (SpiffWorkflow's helper specs stand for the element they
        # wrap, or for none: the join after several start events is not a decision anyone made)
        if sum(1 for output in spec.outputs if _element_id(output)) > 1:
            taken = [
                _element_id(c.task_spec)
                for c in task.children
                if _element_id(c.task_spec) and c.has_state(TaskState.DEFINITE_MASK | TaskState.FINISHED_MASK)
            ]
            self.record(EventType.GATEWAY_DECISION, element_id=spec.bpmn_id, data={"taken": taken}, actor=ENGINE_ACTOR)
        elif spec.bpmn_name or type(spec).__name__ in _ACTIVITY_SPECS:
            self.record(
                EventType.ACTIVITY_COMPLETED,
                element_id=spec.bpmn_id,
                data={"type": type(spec).__name__},
                actor=ENGINE_ACTOR,
            )


def _element_id(spec) -> str | None:
    """The BPMN element a task spec stands for: its own id, or for the split SpiffWorkflow puts
    in front of an activity with boundary events, that activity's."""
    if spec.bpmn_id:
        return spec.bpmn_id
    if isinstance(spec, BoundaryEventSplit):
        return next((o.bpmn_id for o in spec.outputs if not isinstance(o, BoundaryEvent)), None)
    return None


_ACTIVITY_SPECS = {"ScriptTask", "ServiceTask", "BusinessRuleTask", "CallActivity", "SubWorkflowTask"}


def lock_instance(engine, conn, instance_id: int):
    row = fastsql.fetch_one(conn, LOCK_INSTANCE[conn.dialect.name], {"instance_id": instance_id})
    if row is None:
        raise NotFound(f"unknown instance {instance_id}", instance_id=instance_id)
    return row


def open_transition(engine, conn, row, actor: str | None) -> Transition:
    definition = engine.definitions.get(conn, row.definition_id)
    workflow = engine.workflows.take(row.id, row.lock_version)
    if workflow is None:
        state = fastsql.fetch_one(conn, LOAD_STATE, {"instance_id": row.id})[0]
        workflow = engine.serializer.load_state(state, definition.spec, definition.subprocess_specs)
        workflow.script_engine = engine.script_engine
    tr = Transition(engine, conn, row, definition, workflow, actor, engine.clock())
    tr.human_before = humantasks.ready_human_tasks(workflow)
    messages.capture(tr)
    tr.calls_before = servicetasks.pending_calls(workflow, definition)
    return tr


def save(tr: Transition) -> int:
    """Write everything the transition changed; return the new row version."""
    tr.human_after = humantasks.ready_human_tasks(tr.workflow)
    status = instance_status(tr)
    values = _instance_values(tr, status)
    before = {"status": tr.row.status, "ended_at": None, "wake_at": tr.row.wake_at}
    changed = tuple(c for c in _OPTIONAL_COLUMNS if values[c] != before[c])
    updated = fastsql.execute(
        tr.conn,
        _save_statement(changed),
        {"b_id": tr.instance_id, "b_version": tr.row.lock_version, "new_version": tr.row.lock_version + 1, **values},
    )
    if updated != 1:
        raise Conflict(f"instance {tr.instance_id} was changed by someone else; try again", instance_id=tr.instance_id)
    _finish(tr, status)
    return tr.row.lock_version + 1


def insert_instance(tr: Transition) -> int:
    """First save of a new instance (``tr.row`` is a placeholder without id)."""
    tr.human_after = humantasks.ready_human_tasks(tr.workflow)
    status = instance_status(tr)
    values = _instance_values(tr, status)
    values.update(
        definition_id=tr.definition.id,
        process_id=tr.definition.process_id,
        business_key=tr.row.business_key,
        started_by=tr.actor,
        started_at=fastsql.db_time(tr.conn, tr.now),
        lock_version=1,
    )
    instance_id = fastsql.insert_returning_id(tr.conn, INSERT_INSTANCE, values)
    tr.row = _Row(id=instance_id, lock_version=0, business_key=tr.row.business_key, process_id=tr.definition.process_id)
    for event in tr.events:
        event.instance_id = instance_id
    _finish(tr, status)
    return 1


def save_new_instance(tr: Transition) -> dict:
    """First save of a new instance: insert it, announce it to plugins after the commit, cache
    its workflow; return the instance as callers see it. Used by every way an instance starts
    (by hand, by a message, by a timer)."""
    engine = tr.engine
    announce: dict = {}
    if engine.emits("instance_started"):  # queued before the task events the insert adds
        tr.after_commit(lambda: engine.emit("instance_started", instance=announce))
    version = insert_instance(tr)
    started = result(tr, version)
    announce.update({k: started[k] for k in ("id", "process_id", "version", "business_key", "data")})
    instance_id, workflow = tr.instance_id, tr.workflow
    tr.after_commit(lambda: engine.workflows.put(instance_id, version, workflow))
    return started


@dataclass
class _Row:
    id: int | None
    lock_version: int
    business_key: str | None = None
    status: str = InstanceStatus.RUNNING.value
    process_id: str | None = None
    wake_at: object = None
    started_by: str | None = None


def new_row(business_key: str | None) -> _Row:
    return _Row(id=None, lock_version=0, business_key=business_key)


def _instance_values(tr: Transition, status: InstanceStatus) -> dict:
    wf = tr.workflow
    final = status.is_final
    tr.saved_status = status
    tr.saved_data_text = jsonutil.dumps(current_data(wf, tr.human_after))
    conn = tr.conn
    return {
        "status": status.value,
        "state": tr.engine.serializer.dump_state(wf),
        "data": tr.saved_data_text,
        "updated_at": fastsql.db_time(conn, tr.now),
        "ended_at": fastsql.db_time(conn, tr.now) if final else None,
        "wake_at": None if final else fastsql.db_time(conn, next_timer_due(wf)),
    }


def _finish(tr: Transition, status: InstanceStatus) -> None:
    _sync_human_tasks(tr)
    created = outbox.record_calls(tr, tr.calls_before, servicetasks.pending_calls(tr.workflow, tr.definition))
    if created:
        tr.after_commit(lambda: tr.engine.jobs_created(created))
    if tr.failure is not None:
        _raise_incident(tr)
    if status == InstanceStatus.COMPLETED and tr.row.status != InstanceStatus.COMPLETED.value:
        tr.record(EventType.INSTANCE_COMPLETED, actor=ENGINE_ACTOR)
        if tr.engine.emits("instance_completed"):
            summary = _instance_summary(tr)
            tr.after_commit(lambda: tr.engine.emit("instance_completed", instance=summary))
    messages.sync_subscriptions(tr)
    audit.write(tr.conn, tr.events)


def instance_status(tr: Transition) -> InstanceStatus:
    if tr.status_override is not None:
        return tr.status_override
    wf = tr.workflow
    if workflow_completed(wf):
        return InstanceStatus.COMPLETED
    if tr.failure is not None or _has_open_incident(tr):
        return InstanceStatus.ERROR
    if tr.human_after:  # READY human tasks (save() found them before asking)
        return InstanceStatus.RUNNING
    return InstanceStatus.WAITING


def _has_open_incident(tr: Transition) -> bool:
    if tr.row.id is None or tr.row.status not in (InstanceStatus.ERROR.value, InstanceStatus.SUSPENDED.value):
        return False
    return tr.conn.execute(OPEN_INCIDENT, {"instance_id": tr.instance_id}).first() is not None


def current_data(workflow, open_tasks: dict) -> dict:
    """The process data as of the latest step, including what the open human tasks' pre-scripts
    set (the end data once completed). ``open_tasks`` is :func:`humantasks.ready_human_tasks`."""
    if workflow_completed(workflow):
        return dict(workflow.data)
    last = workflow.last_task
    data = dict(last.data) if last is not None else {}
    for task in open_tasks.values():
        data.update(task.data)
    return {k: v for k, v in data.items() if not k.startswith("_")}


def next_timer_due(workflow) -> datetime | None:
    """Earliest due time of a waiting timer (the scheduler wakes the instance then)."""
    due = [d for d in (_timer_due(t) for t in all_tasks(workflow) if t.state == TaskState.WAITING) if d]
    return min(due) if due else None


def _timer_due(task) -> datetime | None:
    spec = task.task_spec
    if not isinstance(spec, CatchingEvent):
        return None
    definition = spec.event_definition
    parts = definition.event_definitions if isinstance(definition, MultipleEventDefinition) else [definition]
    if not any(isinstance(d, TimerEventDefinition) for d in parts):
        return None
    value = task.internal_data.get("event_value")
    if isinstance(value, dict):  # cycle: {"cycles": n, "next": iso, "duration": s}
        value = value.get("next") if value.get("cycles") != 0 else None
    if not isinstance(value, str):
        return None
    try:
        return TimerEventDefinition.get_datetime(value)
    except ValueError:
        return None


def _sync_human_tasks(tr: Transition) -> None:
    after = {} if tr.status_override == InstanceStatus.TERMINATED else tr.human_after
    completed_id = tr.completed_task[0] if tr.completed_task else None
    if completed_id is not None:
        _mark_completed(tr)
    gone = [sid for sid in tr.human_before if sid not in after and sid != tr.completed_spiff_id]
    if gone:
        _cancel_tasks(tr, gone, completed_id)
    new = [after[sid] for sid in after if sid not in tr.human_before]
    if new:
        _insert_tasks(tr, new)


def _mark_completed(tr: Transition) -> None:
    task_id, actor, _data = tr.completed_task
    changed = fastsql.execute(
        tr.conn,
        MARK_COMPLETED,
        {"b_id": task_id, "completed_at": fastsql.db_time(tr.conn, tr.now), "completed_by": actor},
    )
    if changed != 1:
        raise Conflict(f"task {task_id} was already completed", task_id=task_id)


def _cancel_tasks(tr: Transition, spiff_ids: list[str], completed_id: int | None) -> None:
    rows = tr.conn.execute(
        sa.select(human_tasks.c.id, human_tasks.c.element_id).where(
            human_tasks.c.instance_id == tr.instance_id,
            human_tasks.c.spiff_task_id.in_(spiff_ids),
            task_is_active(human_tasks.c.status),
        )
    ).all()
    rows = [r for r in rows if r.id != completed_id]
    if not rows:
        return
    tr.conn.execute(
        human_tasks.update()
        .where(human_tasks.c.id.in_([r.id for r in rows]))
        .values(status=TaskStatus.CANCELLED.value, completed_at=tr.now)
    )
    for r in rows:
        tr.record(EventType.TASK_CANCELLED, task_id=r.id, element_id=r.element_id, actor=ENGINE_ACTOR)


def _insert_tasks(tr: Transition, tasks: list) -> None:
    infos = [assignment.prepare(tr, t, humantasks.describe(t, tr.now)) for t in tasks]
    at = functools.partial(fastsql.db_time, tr.conn)
    ids = {
        i.spiff_task_id: fastsql.insert_returning_id(
            tr.conn,
            INSERT_TASK,
            {
                "instance_id": tr.instance_id,
                "spiff_task_id": i.spiff_task_id,
                "element_id": i.element_id,
                "title": i.title,
                "candidate_group": i.candidate_group,
                "assignee": i.assignee,
                "priority": i.priority,
                "due_at": at(i.due_at),
                "follow_up_at": at(i.follow_up_at),
                "status": _initial_status(i),
                "form": i.form,
                "instructions": i.instructions,
                "created_at": at(tr.now),
                "claimed_at": at(tr.now) if i.assignee else None,  # assigned as it opened
            },
        )
        for i in infos
    }
    tr.new_tasks.extend((ids[i.spiff_task_id], i) for i in infos)
    assignment.record(tr, [(ids[i.spiff_task_id], i) for i in infos if i.assignee])
    if tr.engine.emits("task_created"):
        created = [_new_task_dict(ids[i.spiff_task_id], i, tr) for i in infos]
        tr.after_commit(lambda: [tr.engine.emit("task_created", task=task) for task in created])
    for info in infos:
        tr.record(
            EventType.TASK_CREATED,
            task_id=ids.get(info.spiff_task_id),
            element_id=info.element_id,
            actor=ENGINE_ACTOR,
            data={"title": info.title, "candidate_group": info.candidate_group},
        )


def _raise_incident(tr: Transition) -> None:
    f = tr.failure
    task_id = str(f.task.id) if f.task is not None else None
    incident_id = tr.conn.execute(
        incidents.insert().values(
            instance_id=tr.instance_id,
            spiff_task_id=task_id,
            element_id=f.element_id,
            kind=f.kind,
            message=f.message,
            line=f.line,
            details=f.details,
            status=IncidentStatus.OPEN.value,
            created_at=tr.now,
        )
    ).inserted_primary_key[0]
    tr.record(
        EventType.INCIDENT_RAISED,
        element_id=f.element_id,
        actor=ENGINE_ACTOR,
        data={"incident_id": incident_id, "kind": f.kind, "message": f.message, "line": f.line},
    )
    if tr.engine.emits("incident_raised"):
        incident = {
            "id": incident_id,
            "instance_id": tr.instance_id,
            "element_id": f.element_id,
            "kind": f.kind,
            "message": f.message,
            "line": f.line,
        }
        tr.after_commit(lambda: tr.engine.emit("incident_raised", incident=incident))


def result(tr: Transition, version: int) -> dict:
    """The instance as the caller sees it after this transition, read inside the transaction."""
    row = tr.row
    if tr.human_before and set(tr.human_before) - {tr.completed_spiff_id} or tr.status_override:
        tasks = [_task_dict(t, tr) for t in tr.conn.execute(OPEN_TASKS, {"instance_id": tr.instance_id})]
    else:  # nothing else was open: the open tasks are exactly the ones inserted now
        tasks = [_new_task_dict(task_id, info, tr) for task_id, info in tr.new_tasks]
    status = tr.saved_status
    open_incidents = []
    if status == InstanceStatus.ERROR:
        from .instances import list_incidents

        open_incidents = list_incidents(tr.conn, instance_id=tr.instance_id, status=IncidentStatus.OPEN.value)
    return {
        "id": tr.instance_id,
        "process_id": tr.definition.process_id,
        "version": tr.definition.version,
        "status": status.value,
        "business_key": row.business_key,
        "data": jsonutil.loads(tr.saved_data_text),
        "tasks": tasks,
        "incidents": open_incidents,
        "lock_version": version,
    }


def _task_dict(t, tr: Transition) -> dict:
    row = tr.row
    iso = _iso
    return {
        "id": t.id,
        "instance_id": t.instance_id,
        "element_id": t.element_id,
        "title": t.title,
        "candidate_group": t.candidate_group,
        "assignee": t.assignee,
        "status": t.status,
        "priority": t.priority,
        "due_at": iso(t.due_at),
        "follow_up_at": iso(t.follow_up_at),
        "form": t.form,
        "instructions": t.instructions,
        "process_id": row.process_id,
        "business_key": row.business_key,
        "instance_status": tr.saved_status.value,
        "created_at": iso(t.created_at),
        "claimed_at": iso(t.claimed_at),
        "completed_at": iso(t.completed_at),
        "completed_by": t.completed_by,
    }


def _new_task_dict(task_id: int, info, tr: Transition) -> dict:
    return {
        "id": task_id,
        "instance_id": tr.instance_id,
        "element_id": info.element_id,
        "title": info.title,
        "candidate_group": info.candidate_group,
        "assignee": info.assignee,
        "status": _initial_status(info),
        "priority": info.priority,
        "due_at": _iso(info.due_at),
        "follow_up_at": _iso(info.follow_up_at),
        "form": info.form,
        "instructions": info.instructions,
        "process_id": tr.definition.process_id,
        "business_key": tr.row.business_key,
        "instance_status": tr.saved_status.value,
        "created_at": tr.now.isoformat(),
        "claimed_at": tr.now.isoformat() if info.assignee else None,
        "completed_at": None,
        "completed_by": None,
    }


def _initial_status(info) -> str:
    """A new task is claimed when the assignment hook chose someone, else open to its group."""
    return TaskStatus.CLAIMED.value if info.assignee else TaskStatus.OPEN.value


def _iso(value):
    return value.isoformat() if value is not None else None


def _instance_summary(tr: Transition) -> dict:
    return {
        "id": tr.instance_id,
        "process_id": tr.definition.process_id,
        "version": tr.definition.version,
        "business_key": tr.row.business_key,
        "data": jsonutil.loads(tr.saved_data_text),
    }
